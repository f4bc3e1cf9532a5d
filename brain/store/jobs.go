package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/l2span/l2span/brain/model"
)

// --- jobs ---
//
// A job is unique per (type, resource, pod_id). It is due when it is new or
// failed with next_run_at in the past, or running with an expired lease (its
// worker died). Claims run in write transactions, which are serialized across
// every brain replica, so one job is never handed to two workers whose leases
// are both valid. Parameters inside CASE carry a CAST: PostgreSQL cannot
// infer their type there.

const jobCols = `id, type, resource, pod_id, state, attempts, last_error, next_run_at, lease_owner, lease_until, rerun, created_at, updated_at`

func scanJob(s interface{ Scan(...any) error }) (model.Job, error) {
	var j model.Job
	var next, until, created, updated int64
	var rerun int
	if err := s.Scan(&j.ID, &j.Type, &j.Resource, &j.PodID, &j.State, &j.Attempts, &j.LastError,
		&next, &j.LeaseOwner, &until, &rerun, &created, &updated); err != nil {
		return j, err
	}
	if next > 0 {
		t := fromMicros(next)
		j.NextRunAt = &t
	}
	if until > 0 {
		t := fromMicros(until)
		j.LeaseUntil = &t
	}
	j.Rerun = rerun != 0
	j.CreatedAt, j.UpdatedAt = fromMicros(created), fromMicros(updated)
	return j, nil
}

// EnqueueJob asks for a run of (typ, resource, podID) and returns the job. An
// existing job is reused: a new one stays as it is, a running one is marked
// to run once more when it ends, a finished one (success or failed) becomes
// new and due now with its attempts reset.
func (t *Tx) EnqueueJob(ctx context.Context, typ, resource, podID string, now time.Time) (model.Job, error) {
	j, err := scanJob(t.queryRow(ctx, `SELECT `+jobCols+` FROM jobs WHERE type = ? AND resource = ? AND pod_id = ?`, typ, resource, podID))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		j = model.Job{ID: uuid.NewString(), Type: typ, Resource: resource, PodID: podID, State: model.JobNew, CreatedAt: now, UpdatedAt: now}
		_, err := t.exec(ctx, `INSERT INTO jobs (`+jobCols+`) VALUES (?, ?, ?, ?, ?, 0, '', ?, '', 0, 0, ?, ?)`,
			j.ID, typ, resource, podID, model.JobNew, micros(now), micros(now), micros(now))
		if err != nil {
			return j, fmt.Errorf("insert job %s %s/%s: %w", typ, resource, podID, err)
		}
		return t.GetJob(ctx, j.ID)
	case err != nil:
		return j, fmt.Errorf("get job %s %s/%s: %w", typ, resource, podID, err)
	}
	switch j.State {
	case model.JobNew:
		return j, nil
	case model.JobRunning:
		if j.Rerun {
			return j, nil
		}
		_, err = t.exec(ctx, `UPDATE jobs SET rerun = 1, updated_at = ? WHERE id = ?`, micros(now), j.ID)
	default:
		_, err = t.exec(ctx, `UPDATE jobs SET state = ?, attempts = 0, last_error = '', next_run_at = ?, updated_at = ? WHERE id = ?`,
			model.JobNew, micros(now), micros(now), j.ID)
	}
	if err != nil {
		return j, fmt.Errorf("enqueue job %s: %w", j.ID, err)
	}
	return t.GetJob(ctx, j.ID)
}

// ClaimJobs takes up to max due jobs for owner: they become running with a
// lease until now+lease and one more attempt. Call it in a write transaction.
func (t *Tx) ClaimJobs(ctx context.Context, owner string, now time.Time, lease time.Duration, max int) ([]model.Job, error) {
	if !t.write {
		panic("store: ClaimJobs in a read transaction")
	}
	rows, err := t.query(ctx, `SELECT `+jobCols+` FROM jobs
		WHERE (state IN (?, ?) AND next_run_at > 0 AND next_run_at <= ?) OR (state = ? AND lease_until < ?)
		ORDER BY next_run_at, id LIMIT ?`,
		model.JobNew, model.JobFailed, micros(now), model.JobRunning, micros(now), max)
	if err != nil {
		return nil, fmt.Errorf("find due jobs: %w", err)
	}
	jobs, err := collect(rows, scanJob)
	if err != nil {
		return nil, fmt.Errorf("find due jobs: %w", err)
	}
	until := now.Add(lease)
	for i := range jobs {
		j := &jobs[i]
		if _, err := t.exec(ctx, `UPDATE jobs SET state = ?, attempts = attempts + 1, lease_owner = ?, lease_until = ?, updated_at = ? WHERE id = ?`,
			model.JobRunning, owner, micros(until), micros(now), j.ID); err != nil {
			return nil, fmt.Errorf("claim job %s: %w", j.ID, err)
		}
		j.State, j.LeaseOwner, j.LeaseUntil, j.UpdatedAt = model.JobRunning, owner, &until, now
		j.Attempts++
	}
	return jobs, nil
}

// RenewLease extends owner's lease on a running job; false when the lease
// was lost (taken over, or the job was finished by someone else).
func (t *Tx) RenewLease(ctx context.Context, id, owner string, now time.Time, lease time.Duration) (bool, error) {
	r, err := t.exec(ctx, `UPDATE jobs SET lease_until = ? WHERE id = ? AND lease_owner = ? AND state = ?`,
		micros(now.Add(lease)), id, owner, model.JobRunning)
	if err != nil {
		return false, fmt.Errorf("renew lease of job %s: %w", id, err)
	}
	n, _ := r.RowsAffected()
	return n > 0, nil
}

// CompleteJob records owner's successful run: the job succeeds, or becomes
// new and due now when it was enqueued again while running. False when
// owner no longer held the lease (its result is dropped).
func (t *Tx) CompleteJob(ctx context.Context, id, owner string, now time.Time) (bool, error) {
	r, err := t.exec(ctx, `UPDATE jobs SET
		state = CASE WHEN rerun <> 0 THEN CAST(? AS TEXT) ELSE CAST(? AS TEXT) END,
		next_run_at = CASE WHEN rerun <> 0 THEN CAST(? AS BIGINT) ELSE 0 END,
		attempts = CASE WHEN rerun <> 0 THEN 0 ELSE attempts END,
		rerun = 0, last_error = '', lease_owner = '', lease_until = 0, updated_at = ?
		WHERE id = ? AND lease_owner = ? AND state = ?`,
		model.JobNew, model.JobSuccess, micros(now), micros(now), id, owner, model.JobRunning)
	if err != nil {
		return false, fmt.Errorf("complete job %s: %w", id, err)
	}
	n, _ := r.RowsAffected()
	return n > 0, nil
}

// FailJob records owner's failed run with its error: the job is retried at
// retryAt, or never when retryAt is zero (it gave up), unless it was
// enqueued again while running (then it starts over, due now). False when
// owner no longer held the lease.
func (t *Tx) FailJob(ctx context.Context, id, owner string, now time.Time, runErr string, retryAt time.Time) (bool, error) {
	next := int64(0)
	if !retryAt.IsZero() {
		next = micros(retryAt)
	}
	const maxErr = 4000
	if len(runErr) > maxErr {
		runErr = runErr[:maxErr]
	}
	r, err := t.exec(ctx, `UPDATE jobs SET state = ?,
		next_run_at = CASE WHEN rerun <> 0 AND CAST(? AS INTEGER) = 1 THEN CAST(? AS BIGINT) ELSE CAST(? AS BIGINT) END,
		attempts = CASE WHEN rerun <> 0 AND CAST(? AS INTEGER) = 1 THEN 0 ELSE attempts END,
		rerun = 0, last_error = ?, lease_owner = '', lease_until = 0, updated_at = ?
		WHERE id = ? AND lease_owner = ? AND state = ?`,
		model.JobFailed, boolInt(next == 0), micros(now), next, boolInt(next == 0), runErr, micros(now), id, owner, model.JobRunning)
	if err != nil {
		return false, fmt.Errorf("fail job %s: %w", id, err)
	}
	n, _ := r.RowsAffected()
	return n > 0, nil
}

// RetryJob makes a job due now with its attempts reset; a running job is
// marked to run once more when it ends.
func (t *Tx) RetryJob(ctx context.Context, id string, now time.Time) (model.Job, error) {
	j, err := t.GetJob(ctx, id)
	if err != nil {
		return j, err
	}
	return t.EnqueueJob(ctx, j.Type, j.Resource, j.PodID, now)
}

// GetJob returns a job or ErrNotFound.
func (t *Tx) GetJob(ctx context.Context, id string) (model.Job, error) {
	j, err := scanJob(t.queryRow(ctx, `SELECT `+jobCols+` FROM jobs WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return j, fmt.Errorf("job %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return j, fmt.Errorf("get job %s: %w", id, err)
	}
	return j, nil
}

// ListJobs returns a page of jobs ordered by id.
func (t *Tx) ListJobs(ctx context.Context, f model.JobFilter, p model.Page) (model.List[model.Job], error) {
	var where []string
	var args []any
	for _, c := range []struct{ col, v string }{{"type", f.Type}, {"state", f.State}, {"pod_id", f.PodID}, {"resource", f.Resource}} {
		if c.v != "" {
			where, args = append(where, c.col+" = ?"), append(args, c.v)
		}
	}
	q, args, limit := pageClause(p, where, args)
	rows, err := t.query(ctx, `SELECT `+jobCols+` FROM jobs`+q, args...)
	if err != nil {
		return model.List[model.Job]{}, fmt.Errorf("list jobs: %w", err)
	}
	items, err := collect(rows, scanJob)
	if err != nil {
		return model.List[model.Job]{}, fmt.Errorf("list jobs: %w", err)
	}
	return pageOf(items, limit, func(j model.Job) string { return j.ID }), nil
}

// --- resource routes ---

const routeCols = `top_id, pod_id, resource_type, bottom_id, network_id, created_at`

func scanRoute(s interface{ Scan(...any) error }) (model.Route, error) {
	var r model.Route
	var created int64
	err := s.Scan(&r.TopID, &r.PodID, &r.ResourceType, &r.BottomID, &r.NetworkID, &created)
	r.CreatedAt = fromMicros(created)
	return r, err
}

// PutRoute records (or replaces) the bottom id of a top resource in a pod.
func (t *Tx) PutRoute(ctx context.Context, r model.Route) error {
	_, err := t.exec(ctx, `INSERT INTO resource_routes (`+routeCols+`) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (top_id, pod_id, resource_type) DO UPDATE SET bottom_id = excluded.bottom_id, network_id = excluded.network_id`,
		r.TopID, r.PodID, r.ResourceType, r.BottomID, r.NetworkID, micros(r.CreatedAt))
	if err != nil {
		return fmt.Errorf("put route %s %s/%s: %w", r.ResourceType, r.TopID, r.PodID, err)
	}
	return nil
}

// DeleteRoute forgets one route; deleting a missing route is not an error.
func (t *Tx) DeleteRoute(ctx context.Context, topID, podID, resourceType string) error {
	if _, err := t.exec(ctx, `DELETE FROM resource_routes WHERE top_id = ? AND pod_id = ? AND resource_type = ?`, topID, podID, resourceType); err != nil {
		return fmt.Errorf("delete route %s %s/%s: %w", resourceType, topID, podID, err)
	}
	return nil
}

// Routes returns the routes matching f, ordered by pod, type and top id.
func (t *Tx) Routes(ctx context.Context, f model.RouteFilter) ([]model.Route, error) {
	q := `SELECT ` + routeCols + ` FROM resource_routes WHERE 1 = 1`
	var args []any
	for _, c := range []struct{ col, v string }{{"top_id", f.TopID}, {"pod_id", f.PodID}, {"network_id", f.NetworkID}, {"resource_type", f.ResourceType}} {
		if c.v != "" {
			q += " AND " + c.col + " = ?"
			args = append(args, c.v)
		}
	}
	rows, err := t.query(ctx, q+` ORDER BY pod_id, resource_type, top_id LIMIT 10000`, args...)
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	out, err := collect(rows, scanRoute)
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	if out == nil {
		out = []model.Route{}
	}
	return out, nil
}

// CountJobsByState counts jobs per state.
func (t *Tx) CountJobsByState(ctx context.Context) (map[string]int, error) {
	rows, err := t.query(ctx, `SELECT state, COUNT(*) FROM jobs GROUP BY state`)
	if err != nil {
		return nil, fmt.Errorf("count jobs: %w", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var state string
		var n int
		if err := rows.Scan(&state, &n); err != nil {
			return nil, fmt.Errorf("count jobs: %w", err)
		}
		out[state] = n
	}
	return out, rows.Err()
}

// SetGatewayPerPod records a network's gateway_per_pod option.
func (t *Tx) SetGatewayPerPod(ctx context.Context, networkID string, on bool) error {
	_, err := t.exec(ctx, `INSERT INTO network_options (network_id, gateway_per_pod) VALUES (?, ?)
		ON CONFLICT (network_id) DO UPDATE SET gateway_per_pod = excluded.gateway_per_pod`, networkID, boolInt(on))
	if err != nil {
		return fmt.Errorf("set gateway_per_pod of %s: %w", networkID, err)
	}
	return nil
}

// FindJob returns the job of a type, resource and pod, or nil when there
// is none.
func (t *Tx) FindJob(ctx context.Context, typ, resource, podID string) (*model.Job, error) {
	j, err := scanJob(t.queryRow(ctx, `SELECT `+jobCols+` FROM jobs WHERE type = ? AND resource = ? AND pod_id = ?`, typ, resource, podID))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("get job %s %s/%s: %w", typ, resource, podID, err)
	}
	return &j, nil
}

// SegmentPods lists every (network id, pod id) with a segment, ordered.
func (t *Tx) SegmentPods(ctx context.Context) ([][2]string, error) {
	rows, err := t.query(ctx, `SELECT network_id, pod_id FROM segments ORDER BY network_id, pod_id`)
	if err != nil {
		return nil, fmt.Errorf("list segments: %w", err)
	}
	out, err := collect(rows, func(s interface{ Scan(...any) error }) ([2]string, error) {
		var p [2]string
		return p, s.Scan(&p[0], &p[1])
	})
	if err != nil {
		return nil, fmt.Errorf("list segments: %w", err)
	}
	return out, nil
}
