package api

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// Job states.
const (
	JobNew     = "new"
	JobRunning = "running"
	JobSuccess = "success"
	JobFailed  = "failed"
)

// Job is a durable unit of work on a bottom cloud, unique per (type,
// resource, pod). A failed job with a next_run_at is retried then; without
// one it gave up and waits for POST /v1/jobs/{id}/retry.
type Job struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Resource string `json:"resource"`
	PodID    string `json:"pod_id"`
	State    string `json:"state"`
	Attempts int    `json:"attempts"`
	// LastError is the error of the last failed attempt.
	LastError string     `json:"last_error,omitempty"`
	NextRunAt *time.Time `json:"next_run_at,omitempty"`
	// LeaseOwner is the brain replica running the job until LeaseUntil; a
	// lease that expires (the replica died) lets another replica take over.
	LeaseOwner string     `json:"lease_owner,omitempty"`
	LeaseUntil *time.Time `json:"lease_until,omitempty"`
	// Rerun is set when the job was enqueued again while running: it runs
	// once more after the current run, with the state of then.
	Rerun     bool      `json:"rerun,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Route maps a top resource to the bottom resource made for it in one pod
// (Tricircle's resource routing).
type Route struct {
	TopID        string `json:"top_id"`
	PodID        string `json:"pod_id"`
	ResourceType string `json:"resource_type"`
	BottomID     string `json:"bottom_id"`
	// NetworkID is the top network the resource belongs to.
	NetworkID string    `json:"network_id"`
	CreatedAt time.Time `json:"created_at"`
}

// ListJobs returns a page of jobs; Filters: type, state, pod_id, resource.
func (c *Client) ListJobs(ctx context.Context, o ListOptions) (List[Job], error) {
	return list[Job](ctx, c, "/v1/jobs", o)
}

// GetJob returns a job.
func (c *Client) GetJob(ctx context.Context, id string) (Job, error) {
	var out Job
	err := c.do(ctx, http.MethodGet, "/v1/jobs/"+url.PathEscape(id), nil, nil, &out)
	return out, err
}

// RetryJob makes a job due now with its attempts reset.
func (c *Client) RetryJob(ctx context.Context, id string) (Job, error) {
	var out Job
	err := c.do(ctx, http.MethodPost, "/v1/jobs/"+url.PathEscape(id)+"/retry", nil, nil, &out)
	return out, err
}

// ListRoutes returns the resource routes of a top resource (all pods), or
// of a pod when topID is empty.
func (c *Client) ListRoutes(ctx context.Context, topID, podID string) (List[Route], error) {
	q := url.Values{}
	if topID != "" {
		q.Set("top_id", topID)
	}
	if podID != "" {
		q.Set("pod_id", podID)
	}
	var out List[Route]
	err := c.do(ctx, http.MethodGet, "/v1/routes", q, nil, &out)
	return out, err
}
