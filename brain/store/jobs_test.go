package store

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/l2span/l2span/brain/model"
)

func TestJobLifecycle(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		lease := 30 * time.Second
		var id string
		write(t, s, func(ctx context.Context, tx *Tx) error {
			j := must[model.Job](t)(tx.EnqueueJob(ctx, "sync", "n1", "pod1", t0))
			if j.State != model.JobNew || j.Attempts != 0 || j.NextRunAt == nil || !j.NextRunAt.Equal(t0) || !j.CreatedAt.Equal(t0) {
				t.Errorf("new job %+v", j)
			}
			id = j.ID
			// Enqueued again while new: the same job, unchanged.
			if again := must[model.Job](t)(tx.EnqueueJob(ctx, "sync", "n1", "pod1", t0.Add(time.Second))); again.ID != id || again.State != model.JobNew {
				t.Errorf("enqueue twice: %+v", again)
			}
			// Not due before its time.
			if jobs := must[[]model.Job](t)(tx.ClaimJobs(ctx, "w1", t0.Add(-time.Second), lease, 10)); len(jobs) != 0 {
				t.Errorf("claimed a job before it was due: %+v", jobs)
			}
			return nil
		})
		now := t0.Add(time.Second)
		write(t, s, func(ctx context.Context, tx *Tx) error {
			jobs := must[[]model.Job](t)(tx.ClaimJobs(ctx, "w1", now, lease, 10))
			if len(jobs) != 1 || jobs[0].State != model.JobRunning || jobs[0].Attempts != 1 || jobs[0].LeaseOwner != "w1" || !jobs[0].LeaseUntil.Equal(now.Add(lease)) {
				t.Fatalf("claim: %+v", jobs)
			}
			// Running: nobody else gets it, a second enqueue asks for a rerun.
			if jobs := must[[]model.Job](t)(tx.ClaimJobs(ctx, "w2", now, lease, 10)); len(jobs) != 0 {
				t.Errorf("a running job was claimed twice: %+v", jobs)
			}
			if j := must[model.Job](t)(tx.EnqueueJob(ctx, "sync", "n1", "pod1", now)); !j.Rerun || j.State != model.JobRunning {
				t.Errorf("enqueue while running: %+v", j)
			}
			if ok := must[bool](t)(tx.RenewLease(ctx, id, "w1", now.Add(time.Second), lease)); !ok {
				t.Error("the owner could not renew its lease")
			}
			if ok := must[bool](t)(tx.RenewLease(ctx, id, "w2", now, lease)); ok {
				t.Error("another worker renewed the lease")
			}
			if ok := must[bool](t)(tx.CompleteJob(ctx, id, "w2", now)); ok {
				t.Error("another worker completed the job")
			}
			// Completed with a rerun pending: new and due now, attempts reset.
			if ok := must[bool](t)(tx.CompleteJob(ctx, id, "w1", now)); !ok {
				t.Error("the owner could not complete its job")
			}
			j := must[model.Job](t)(tx.GetJob(ctx, id))
			if j.State != model.JobNew || j.Rerun || j.Attempts != 0 || j.LeaseOwner != "" || j.LeaseUntil != nil || !j.NextRunAt.Equal(now) {
				t.Errorf("after a run with a rerun pending: %+v", j)
			}
			// Claimed and completed again: success, not due.
			must[[]model.Job](t)(tx.ClaimJobs(ctx, "w1", now, lease, 10))
			must[bool](t)(tx.CompleteJob(ctx, id, "w1", now))
			if j := must[model.Job](t)(tx.GetJob(ctx, id)); j.State != model.JobSuccess || j.NextRunAt != nil {
				t.Errorf("after success: %+v", j)
			}
			if jobs := must[[]model.Job](t)(tx.ClaimJobs(ctx, "w1", now.Add(time.Hour), lease, 10)); len(jobs) != 0 {
				t.Errorf("a finished job was claimed: %+v", jobs)
			}
			return nil
		})
	})
}

func TestJobFailuresAndLeases(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		lease := 10 * time.Second
		write(t, s, func(ctx context.Context, tx *Tx) error {
			id := must[model.Job](t)(tx.EnqueueJob(ctx, "sync", "n1", "pod1", t0)).ID
			must[[]model.Job](t)(tx.ClaimJobs(ctx, "w1", t0, lease, 10))
			// Failed with a retry time: due again then, with its error kept
			// (cut to a bounded length).
			retry := t0.Add(time.Minute)
			if ok := must[bool](t)(tx.FailJob(ctx, id, "w1", t0, strings.Repeat("x", 5000), retry)); !ok {
				t.Fatal("fail by the owner refused")
			}
			j := must[model.Job](t)(tx.GetJob(ctx, id))
			if j.State != model.JobFailed || !j.NextRunAt.Equal(retry) || len(j.LastError) != 4000 || j.Attempts != 1 {
				t.Errorf("after a failure: state %s next %v error %d attempts %d", j.State, j.NextRunAt, len(j.LastError), j.Attempts)
			}
			if jobs := must[[]model.Job](t)(tx.ClaimJobs(ctx, "w1", retry.Add(-time.Second), lease, 10)); len(jobs) != 0 {
				t.Errorf("claimed before its retry time: %+v", jobs)
			}
			jobs := must[[]model.Job](t)(tx.ClaimJobs(ctx, "w1", retry, lease, 10))
			if len(jobs) != 1 || jobs[0].Attempts != 2 {
				t.Fatalf("retry claim: %+v", jobs)
			}
			// Its worker dies: once the lease runs out another takes it over,
			// and the first one's late result is dropped.
			if jobs := must[[]model.Job](t)(tx.ClaimJobs(ctx, "w2", retry.Add(lease-time.Second), lease, 10)); len(jobs) != 0 {
				t.Errorf("taken over within the lease: %+v", jobs)
			}
			later := retry.Add(lease + time.Second)
			if jobs := must[[]model.Job](t)(tx.ClaimJobs(ctx, "w2", later, lease, 10)); len(jobs) != 1 || jobs[0].LeaseOwner != "w2" || jobs[0].Attempts != 3 {
				t.Fatalf("take over: %+v", jobs)
			}
			if ok := must[bool](t)(tx.FailJob(ctx, id, "w1", later, "late", time.Time{})); ok {
				t.Error("the old owner's failure was recorded")
			}
			// Given up (no retry time): never due, until retried by hand.
			if ok := must[bool](t)(tx.FailJob(ctx, id, "w2", later, "gave up", time.Time{})); !ok {
				t.Fatal("fail by the new owner refused")
			}
			if jobs := must[[]model.Job](t)(tx.ClaimJobs(ctx, "w2", later.Add(time.Hour), lease, 10)); len(jobs) != 0 {
				t.Errorf("a job that gave up was claimed: %+v", jobs)
			}
			j = must[model.Job](t)(tx.RetryJob(ctx, id, later))
			if j.State != model.JobNew || j.Attempts != 0 || j.LastError != "" || !j.NextRunAt.Equal(later) {
				t.Errorf("after a manual retry: %+v", j)
			}
			return nil
		})
	})
}

func TestJobListsAndRoutes(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		write(t, s, func(ctx context.Context, tx *Tx) error {
			for _, r := range []struct{ typ, res, pod string }{{"sync", "n1", "pod1"}, {"sync", "n1", "pod2"}, {"sync", "n2", "pod1"}, {"other", "n1", "pod1"}} {
				must[model.Job](t)(tx.EnqueueJob(ctx, r.typ, r.res, r.pod, t0))
			}
			must[[]model.Job](t)(tx.ClaimJobs(ctx, "w1", t0, time.Minute, 1))
			for _, r := range []model.Route{
				{TopID: "n1", PodID: "pod1", ResourceType: "network", BottomID: "b1", NetworkID: "n1", CreatedAt: t0},
				{TopID: "s1", PodID: "pod1", ResourceType: "subnet", BottomID: "b2", NetworkID: "n1", CreatedAt: t0},
				{TopID: "n1", PodID: "pod2", ResourceType: "network", BottomID: "b3", NetworkID: "n1", CreatedAt: t0},
				{TopID: "n1", PodID: "pod1", ResourceType: "network", BottomID: "b9", NetworkID: "n1", CreatedAt: t0}, // replaces b1
			} {
				if err := tx.PutRoute(ctx, r); err != nil {
					return err
				}
			}
			if err := tx.DeleteRoute(ctx, "n1", "pod2", "network"); err != nil {
				return err
			}
			return tx.DeleteRoute(ctx, "gone", "pod2", "network")
		})
		read(t, s, func(ctx context.Context, tx *Tx) error {
			for f, want := range map[model.JobFilter]int{{}: 4, {Type: "sync"}: 3, {Resource: "n1", PodID: "pod1"}: 2, {State: model.JobRunning}: 1, {Type: "none"}: 0} {
				if l := must[model.List[model.Job]](t)(tx.ListJobs(ctx, f, model.Page{})); len(l.Items) != want {
					t.Errorf("jobs %+v: %d, want %d", f, len(l.Items), want)
				}
			}
			l := must[model.List[model.Job]](t)(tx.ListJobs(ctx, model.JobFilter{}, model.Page{Limit: 3}))
			if len(l.Items) != 3 || l.Next != l.Items[2].ID {
				t.Errorf("first page of 3: %d items, next %q", len(l.Items), l.Next)
			}
			if counts := must[map[string]int](t)(tx.CountJobsByState(ctx)); counts[model.JobNew] != 3 || counts[model.JobRunning] != 1 {
				t.Errorf("counts %v", counts)
			}
			routes := must[[]model.Route](t)(tx.Routes(ctx, model.RouteFilter{NetworkID: "n1"}))
			if len(routes) != 2 || routes[0].ResourceType != "network" || routes[0].BottomID != "b9" || routes[1].TopID != "s1" {
				t.Errorf("routes of n1: %+v", routes)
			}
			if routes := must[[]model.Route](t)(tx.Routes(ctx, model.RouteFilter{PodID: "pod2"})); routes == nil || len(routes) != 0 {
				t.Errorf("routes of pod2 after delete: %#v", routes)
			}
			return nil
		})
	})
}
