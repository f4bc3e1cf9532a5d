package main

func findGroup(name string) *group {
	for _, g := range groups() {
		if g.name == name {
			return g
		}
	}
	return nil
}

func groups() []*group {
	return []*group{
		{name: "pod", summary: "pods: bottom OpenStack clouds, one AZ each", cmds: podCommands()},
		{name: "network", summary: "top networks and their span across pods", cmds: networkCommands()},
		{name: "subnet", summary: "subnets of top networks", cmds: subnetCommands()},
		{name: "port", summary: "ports bound in pods", cmds: portCommands()},
		{name: "gateway", summary: "gateways registered by agents", cmds: gatewayCommands()},
		{name: "agent", summary: "an agent's own view of its dataplane (read from the agent, not the brain)", cmds: agentCommands()},
		{name: "job", summary: "durable jobs on bottom clouds (bottom networks, subnets, ports)", cmds: jobCommands()},
		{name: "token", summary: "API tokens: issue per-role credentials, list, revoke (admin)", cmds: tokenCommands()},
		{name: "state", summary: "a pod's desired state (what its gateways program), or a watch of it", leaf: stateCommand()},
	}
}
