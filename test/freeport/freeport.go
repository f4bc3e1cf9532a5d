// Package freeport picks loopback TCP ports for servers that tests start
// (PostgreSQL, neutron-server, ovsdb-server), which cannot be handed an
// open socket and must be told a port number.
package freeport

import (
	"fmt"
	"net"
)

// TCP returns a TCP port on 127.0.0.1 that was free a moment ago. Another
// process may take it before the caller's server binds it; servers started
// this way fail loudly then, and the test reports it.
func TCP() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
