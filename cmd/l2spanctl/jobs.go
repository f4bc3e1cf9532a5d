package main

import (
	"flag"
	"fmt"
	"strings"

	"github.com/l2span/l2span/brain/api"
)

func jobCommands() []*command {
	return []*command{
		{
			name: "list", args: "[--state S] [--pod POD] [--type T]", summary: "list jobs", maxArgs: 0,
			setup: func(fs *flag.FlagSet) runFunc {
				state := fs.String("state", "", "only jobs in `STATE` (new, running, success, failed)")
				pod := fs.String("pod", "", "only jobs of `POD`")
				typ := fs.String("type", "", "only jobs of `TYPE`")
				return withAPI(func(e *env, c *api.Client, _ []string) error {
					jobs, err := api.ListAll(e.ctx, c.ListJobs, api.ListOptions{Filters: map[string]string{"state": *state, "pod_id": *pod, "type": *typ}})
					if err != nil {
						return err
					}
					return list(e, jobs, func(t *table) {
						t.row("ID", "TYPE", "RESOURCE", "POD", "STATE", "ATTEMPTS", "NEXT_RUN", "LAST_ERROR")
						for _, j := range jobs {
							next := "-"
							if j.NextRunAt != nil && j.State != "success" {
								next = fmtTime(*j.NextRunAt)
							}
							t.row(j.ID, j.Type, j.Resource, j.PodID, j.State, fmt.Sprint(j.Attempts), next, oneLine(j.LastError))
						}
					})
				})
			},
		},
		{
			name: "show", args: "ID", summary: "show a job", minArgs: 1, maxArgs: 1,
			setup: func(fs *flag.FlagSet) runFunc {
				return withAPI(func(e *env, c *api.Client, args []string) error {
					j, err := c.GetJob(e.ctx, args[0])
					if err != nil {
						return err
					}
					return e.show(j, func(t *table) { jobFields(t, j) })
				})
			},
		},
		{
			name: "retry", args: "ID", summary: "run a job again now (after a failure, or to repair drift)", minArgs: 1, maxArgs: 1,
			setup: func(fs *flag.FlagSet) runFunc {
				return withAPI(func(e *env, c *api.Client, args []string) error {
					j, err := c.RetryJob(e.ctx, args[0])
					if err != nil {
						return err
					}
					return e.show(j, func(t *table) { jobFields(t, j) })
				})
			},
		},
	}
}

func jobFields(t *table, j api.Job) {
	t.row("id", j.ID)
	t.row("type", j.Type)
	t.row("resource", j.Resource)
	t.row("pod_id", j.PodID)
	t.row("state", j.State)
	t.row("attempts", fmt.Sprint(j.Attempts))
	if j.NextRunAt != nil {
		t.row("next_run", fmtTime(*j.NextRunAt))
	}
	t.row("lease_owner", j.LeaseOwner)
	t.row("last_error", oneLine(j.LastError))
	t.row("created", fmtTime(j.CreatedAt))
	t.row("updated", fmtTime(j.UpdatedAt))
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 120 {
		s = s[:117] + "..."
	}
	return s
}
