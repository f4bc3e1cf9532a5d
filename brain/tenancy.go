package brain

import "github.com/l2span/l2span/brain/model"

// checkProject validates an optional Neutron project id.
func checkProject(field, v string) error {
	if v == "" {
		return nil
	}
	return checkID(field, v)
}

// checkTenancy lets a port join a network of another project only if the
// network is shared. A port or network with no project (made by an admin,
// or before tenancy existed) is not bound by it.
func checkTenancy(n model.Network, p model.Port) error {
	if n.Shared || n.ProjectID == "" || p.ProjectID == "" || n.ProjectID == p.ProjectID {
		return nil
	}
	return conflict("network_id", "network %s belongs to project %s and is not shared; a port of project %s cannot join it",
		n.ID, n.ProjectID, p.ProjectID)
}
