package main

import (
	"flag"
	"fmt"

	"github.com/l2span/l2span/brain/api"
)

func podCommands() []*command {
	return []*command{
		{
			name: "create", args: "ID --az AZ [flags]", summary: "register a pod", minArgs: 1, maxArgs: 1,
			setup: func(fs *flag.FlagSet) runFunc {
				var p api.Pod
				fs.StringVar(&p.AZ, "az", "", "availability `ZONE` the pod is in (required)")
				fs.StringVar(&p.Region, "region", "", "OpenStack `REGION` of the pod")
				fs.StringVar(&p.DVRBaseMAC, "dvr-base-mac", "", "the pod's Neutron dvr_base_mac `PREFIX`, e.g. fa:16:3f:00:00:00/24")
				fs.StringVar(&p.NeutronURL, "neutron-url", "", "the pod's bottom Neutron endpoint `URL`")
				return func(e *env, args []string) error {
					if err := required(fs, "az"); err != nil {
						return err
					}
					c, err := e.api()
					if err != nil {
						return err
					}
					p.ID = args[0]
					out, err := c.CreatePod(e.ctx, p)
					if err != nil {
						return err
					}
					return e.show(out, func(t *table) { podFields(t, out) })
				}
			},
		},
		{
			name: "list", args: "[--az AZ]", summary: "list pods", maxArgs: 0,
			setup: func(fs *flag.FlagSet) runFunc {
				az := fs.String("az", "", "only pods in availability `ZONE`")
				return withAPI(func(e *env, c *api.Client, _ []string) error {
					pods, err := api.ListAll(e.ctx, c.ListPods, filters("az", *az))
					if err != nil {
						return err
					}
					return list(e, pods, func(t *table) {
						t.row("ID", "AZ", "REGION", "DVR_BASE_MAC", "NEUTRON_URL", "CREATED")
						for _, p := range pods {
							t.row(p.ID, p.AZ, p.Region, p.DVRBaseMAC, p.NeutronURL, fmtTime(p.CreatedAt))
						}
					})
				})
			},
		},
		{
			name: "show", args: "ID", summary: "show a pod and its gateways", minArgs: 1, maxArgs: 1,
			setup: func(fs *flag.FlagSet) runFunc {
				return withAPI(func(e *env, c *api.Client, args []string) error {
					p, err := c.GetPod(e.ctx, args[0])
					if err != nil {
						return err
					}
					if e.format == "json" {
						return e.json(p)
					}
					gws, err := api.ListAll(e.ctx, c.ListGateways, filters("pod_id", p.ID))
					if err != nil {
						return err
					}
					t := e.table()
					podFields(t, p)
					if len(gws) == 0 {
						t.row("gateways", "(none registered)")
					}
					t.flush()
					if len(gws) > 0 {
						fmt.Fprintln(e.out, "\nGateways:")
						t = e.table()
						gatewayRows(t, gws)
						t.flush()
					}
					return t.err
				})
			},
		},
		{
			name: "delete", args: "ID", summary: "delete a pod", minArgs: 1, maxArgs: 1,
			setup: func(fs *flag.FlagSet) runFunc {
				return withAPI(func(e *env, c *api.Client, args []string) error {
					if err := c.DeletePod(e.ctx, args[0]); err != nil {
						return err
					}
					return e.done("pod %s deleted", args[0])
				})
			},
		},
	}
}

func podFields(t *table, p api.Pod) {
	t.row("id", p.ID)
	t.row("az", p.AZ)
	t.row("region", p.Region)
	t.row("dvr_base_mac", p.DVRBaseMAC)
	t.row("neutron_url", p.NeutronURL)
	t.row("created", fmtTime(p.CreatedAt))
}
