# Copyright l2span authors. Licensed under the Apache License 2.0.
"""ML2 mechanism driver `l2span_bottom`, loaded by each pod's (bottom)
Neutron: it makes l2span's shadow ports look like ports on a Linux bridge
agent host, so that Neutron's own L2 population points every compute host
at the l2span gateway of the pod (Tricircle's cross-Neutron VXLAN design).

A shadow port is a port the l2span brain creates in this Neutron for a VM
port that lives in another pod: same MAC and IPs, device_owner
``l2span:shadow``, ``binding:host_id`` = the pod's gateway host name and
``binding:profile`` = ``{"l2span_tunnel_ip": G}`` where G is the gateway's
pod-side tunnel IP (a virtual IP held by the pod's designated forwarder).

For such a port this driver

* records a *shadow agent* row for the gateway host through the core
  plugin's ``create_or_update_agent``: agent_type "Linux bridge agent",
  configurations ``tunneling_ip`` = G, ``tunnel_types`` = [vxlan],
  ``l2_population`` = true. L2 population reads the tunnel IP of a port's
  host from that row. Its heartbeat is refreshed on each write of a shadow
  port (at most every ``HEARTBEAT_EVERY`` seconds per host), so the agent
  list shows it alive while l2span works the pod;
* binds the port itself, on the network's VXLAN segment, and marks it
  ACTIVE: the status change makes l2population send ``fdb_add`` to the real
  agents, and a DELETE sends ``fdb_remove``.

Ports without the profile key are left to the other drivers. The driver
declares L2 connectivity: ML2 offers a port with no fixed IPs (the shadow
of a top port without addresses) only to drivers that do, and with the
default ("legacy") such a port would silently go to linuxbridge. List
``l2span_bottom`` before ``linuxbridge`` in ``mechanism_drivers``: once the
shadow agent row exists and is alive, linuxbridge would otherwise bind the
shadow port to it and leave it DOWN (no real agent ever reports it up).
"""

import threading
import time

from neutron_lib.api.definitions import portbindings
from neutron_lib import constants
from neutron_lib import context as n_context
from neutron_lib.plugins import directory
from neutron_lib.plugins.ml2 import api
from oslo_log import log as logging

LOG = logging.getLogger(__name__)

PROFILE_KEY = 'l2span_tunnel_ip'
DEVICE_OWNER = 'l2span:shadow'
AGENT_TYPE = 'Linux bridge agent'
AGENT_BINARY = 'l2span-gateway'
HEARTBEAT_EVERY = 10.0


def shadow_tunnel_ip(port):
    """The shadow tunnel IP a port's binding profile names, or None."""
    profile = port.get(portbindings.PROFILE) or {}
    if not isinstance(profile, dict):
        return None
    return profile.get(PROFILE_KEY) or None


class L2spanBottomDriver(api.MechanismDriver):
    """Binds l2span shadow ports and keeps their shadow agents."""

    def initialize(self):
        self._lock = threading.Lock()
        self._beats = {}  # (host, ip) -> time of the last agent write
        LOG.info('l2span_bottom: binding ports whose binding profile '
                 'names %s', PROFILE_KEY)

    @property
    def connectivity(self):
        # MechanismManager._check_drivers_connectivity skips every driver
        # but the L2 ones for a port without fixed IPs.
        return portbindings.CONNECTIVITY_L2

    def _report_agent(self, host, ip, force=False):
        now = time.monotonic()
        with self._lock:
            last = self._beats.get((host, ip))
            if not force and last is not None and now - last < HEARTBEAT_EVERY:
                return
            self._beats[(host, ip)] = now
        state = {
            'agent_type': AGENT_TYPE,
            'binary': AGENT_BINARY,
            'topic': 'N/A',
            'host': host,
            'configurations': {
                'tunneling_ip': ip,
                'tunnel_types': [constants.TYPE_VXLAN],
                'l2_population': True,
            },
            'start_flag': force,
        }
        plugin = directory.get_plugin()
        # Its own admin context and transaction: bind_port runs outside
        # the port's transaction, postcommit after it.
        plugin.create_or_update_agent(n_context.get_admin_context(), state)

    def bind_port(self, context):
        port = context.current
        ip = shadow_tunnel_ip(port)
        if not ip:
            return
        host = context.host
        try:
            self._report_agent(host, ip, force=True)
        except Exception:
            LOG.exception('l2span_bottom: shadow agent for host %s (%s)',
                          host, ip)
            return
        for seg in context.segments_to_bind:
            if seg[api.NETWORK_TYPE] == constants.TYPE_VXLAN:
                context.set_binding(
                    seg[api.ID], portbindings.VIF_TYPE_OTHER,
                    {portbindings.VIF_DETAILS_CONNECTIVITY:
                     portbindings.CONNECTIVITY_L2},
                    status=constants.PORT_STATUS_ACTIVE)
                LOG.debug('l2span_bottom: bound shadow port %s to %s (%s)',
                          port['id'], host, ip)
                return
        LOG.warning('l2span_bottom: shadow port %s: network %s has no VXLAN '
                    'segment to bind', port['id'], port['network_id'])

    def _refresh(self, context):
        port = context.current
        ip = shadow_tunnel_ip(port)
        host = port.get(portbindings.HOST_ID)
        if not ip or not host:
            return
        try:
            self._report_agent(host, ip)
        except Exception:
            LOG.exception('l2span_bottom: refresh shadow agent of %s', host)

    def create_port_postcommit(self, context):
        self._refresh(context)

    def update_port_postcommit(self, context):
        self._refresh(context)
        # A shadow port another driver bound stays DOWN and l2population
        # never points the compute hosts at the gateway: say so.
        port = context.current
        vif = port.get(portbindings.VIF_TYPE)
        if shadow_tunnel_ip(port) and vif not in (
                None, portbindings.VIF_TYPE_OTHER,
                portbindings.VIF_TYPE_UNBOUND,
                portbindings.VIF_TYPE_BINDING_FAILED):
            LOG.warning('l2span_bottom: shadow port %s on host %s is bound '
                        'with vif_type %s by another driver: list '
                        'l2span_bottom first in [ml2] mechanism_drivers',
                        port['id'], port.get(portbindings.HOST_ID), vif)
