package podrig

import "fmt"

// StopNeutron kills the pod's neutron-server (its process group, by PID):
// the pod's Neutron API is down until StartNeutron. Its agents and the
// compute hosts' dataplanes stay as they are.
func (p *Pod) StopNeutron() {
	p.neutron.stop()
	if p.transport != nil {
		p.transport.CloseIdleConnections()
	}
}

// StartNeutron starts the pod's neutron-server again on its database and
// waits until it answers.
func (p *Pod) StartNeutron() error {
	if p.neutron != nil && p.neutron.alive() {
		return fmt.Errorf("%s: neutron-server already runs", p.ID)
	}
	return p.runNeutron()
}
