package main

import (
	"flag"

	"github.com/l2span/l2span/brain/api"
)

func subnetCommands() []*command {
	return []*command{
		{
			name: "create", args: "NETWORK --cidr CIDR [--gateway-ip IP]", summary: "add a subnet to a network (by id or name)", minArgs: 1, maxArgs: 1,
			setup: func(fs *flag.FlagSet) runFunc {
				var s api.Subnet
				fs.StringVar(&s.CIDR, "cidr", "", "subnet `CIDR`, e.g. 10.0.0.0/24 (required)")
				fs.StringVar(&s.GatewayIP, "gateway-ip", "", "the subnet's (anycast) gateway `IP`")
				return func(e *env, args []string) error {
					if err := required(fs, "cidr"); err != nil {
						return err
					}
					c, err := e.api()
					if err != nil {
						return err
					}
					if s.NetworkID, err = networkID(e.ctx, c, args[0]); err != nil {
						return err
					}
					out, err := c.CreateSubnet(e.ctx, s)
					if err != nil {
						return err
					}
					return e.show(out, func(t *table) { subnetFields(t, out) })
				}
			},
		},
		{
			name: "list", args: "[--network NETWORK]", summary: "list subnets", maxArgs: 0,
			setup: func(fs *flag.FlagSet) runFunc {
				network := fs.String("network", "", "only subnets of `NETWORK` (id or name)")
				return withAPI(func(e *env, c *api.Client, _ []string) error {
					nid, err := networkID(e.ctx, c, *network)
					if err != nil {
						return err
					}
					subnets, err := api.ListAll(e.ctx, c.ListSubnets, filters("network_id", nid))
					if err != nil {
						return err
					}
					return list(e, subnets, func(t *table) {
						t.row("ID", "NETWORK_ID", "CIDR", "GATEWAY_IP", "CREATED")
						for _, s := range subnets {
							t.row(s.ID, s.NetworkID, s.CIDR, s.GatewayIP, fmtTime(s.CreatedAt))
						}
					})
				})
			},
		},
		{
			name: "show", args: "ID", summary: "show a subnet", minArgs: 1, maxArgs: 1,
			setup: func(fs *flag.FlagSet) runFunc {
				return withAPI(func(e *env, c *api.Client, args []string) error {
					s, err := c.GetSubnet(e.ctx, args[0])
					if err != nil {
						return err
					}
					return e.show(s, func(t *table) { subnetFields(t, s) })
				})
			},
		},
		{
			name: "delete", args: "ID", summary: "delete a subnet", minArgs: 1, maxArgs: 1,
			setup: func(fs *flag.FlagSet) runFunc {
				return withAPI(func(e *env, c *api.Client, args []string) error {
					if err := c.DeleteSubnet(e.ctx, args[0]); err != nil {
						return err
					}
					return e.done("subnet %s deleted", args[0])
				})
			},
		},
	}
}

func subnetFields(t *table, s api.Subnet) {
	t.row("id", s.ID)
	t.row("network_id", s.NetworkID)
	t.row("cidr", s.CIDR)
	t.row("gateway_ip", s.GatewayIP)
	t.row("created", fmtTime(s.CreatedAt))
}
