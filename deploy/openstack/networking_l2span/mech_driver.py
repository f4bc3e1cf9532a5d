# Copyright l2span authors. Licensed under the Apache License 2.0.
"""ML2 mechanism driver `l2span`: Neutron's networks, subnets and ports go to
the l2span brain.

Where the brain is called (never inside Neutron's DB transaction):

* ``*_precommit`` (inside the transaction) only *validates*, against a view
  of the brain held in memory: pods and their AZs, the brain's copy of the
  network (id, type, segments) and, for a requested MAC, the brain's port
  with that MAC. A rule the brain would break (port in a pod outside the
  network's az_hints, local network in a second pod, MAC used by another
  port of the network, unknown AZ, gateway outside its subnet) raises a
  Neutron Conflict/BadRequest carrying the message the brain would send, so
  Neutron refuses the request with nothing written.
* The view is refreshed *before* the transaction, from BEFORE_CREATE /
  BEFORE_UPDATE callbacks, with a short timeout (``validate_timeout``); a
  brain that does not answer leaves the last view in use (or none: then the
  brain's own check after commit is the only one).
* ``*_postcommit`` (after the commit) makes the brain match. A transient
  failure (no brain, timeout, 5xx, ordering such as a subnet not there yet)
  goes to the journal and is retried in the background, re-reading Neutron's
  current state of that resource. A user error on a *create* of a network or
  subnet is raised, so Neutron removes what it created.
* A periodic full sync (``sync_interval``) compares all of Neutron with the
  brain and repairs any drift, deletes included.

Brain networks, subnets and ports take the Neutron id (and networks the
Neutron name, marked managed_by "neutron"), so the driver finds them without
a mapping table and every message names what the user typed. Networks an
older driver named after the Neutron id are still found by that name.
The per-pod segments the brain reports are mirrored into Neutron (span.py).
"""

import fcntl
import fnmatch
import ipaddress
import os
import re
import threading
import time

from neutron_lib.api.definitions import portbindings
from neutron_lib.callbacks import events
from neutron_lib.callbacks import registry
from neutron_lib.callbacks import resources
from neutron_lib import context as n_context
from neutron_lib import exceptions as n_exc
from neutron_lib.plugins import directory
from neutron_lib.plugins.ml2 import api
from oslo_config import cfg
from oslo_log import log as logging

from networking_l2span import client as brain_client
from networking_l2span import config
from networking_l2span import journal as l2journal
from networking_l2span import span

LOG = logging.getLogger(__name__)

config.register_opts()

UUID_RE = re.compile(r'^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-'
                     r'[0-9a-f]{12}$')
LEARNED_OWNER = 'l2gw:learned'  # ports the agents learned; never ours
MANAGED_BY = 'neutron'          # the brain's mark on this driver's networks

NETWORK, SUBNET, PORT = 'network', 'subnet', 'port'


class L2spanConflict(n_exc.Conflict):
    message = "%(msg)s"


class L2spanBadRequest(n_exc.BadRequest):
    message = "%(msg)s"


class _Transient(Exception):
    """Retry later (e.g. the brain network of a subnet is not there yet)."""


def _go_list(items):
    return '[' + ' '.join(items) + ']'


OVERLAY_TYPES = ('vxlan', 'geneve', 'gre')


def neutron_segment(net, segments=None):
    """Neutron's (first) segment of a network: (network_type,
    physical_network, segmentation_id), from the segments ML2 hands a
    mechanism driver or from a network dict's provider attributes."""
    if segments:
        s = segments[0]
        return (s.get('network_type'), s.get('physical_network'),
                s.get('segmentation_id'))
    if net.get('provider:network_type'):
        return (net.get('provider:network_type'),
                net.get('provider:physical_network'),
                net.get('provider:segmentation_id'))
    for seg in net.get('segments') or []:
        return (seg.get('provider:network_type'),
                seg.get('provider:physical_network'),
                seg.get('provider:segmentation_id'))
    return None, None, None


class L2spanMechanismDriver(api.MechanismDriver):

    def initialize(self):
        conf = cfg.CONF.l2span
        self.conf = conf
        self.client = brain_client.BrainClient(
            conf.brain_url, token=conf.token, ca_file=conf.ca_file,
            timeout=conf.timeout, insecure=conf.insecure)
        self.type_map = config.type_map()
        path = conf.journal_path or os.path.join(
            cfg.CONF.state_path, 'l2span-journal.db')
        self.journal = l2journal.Journal(path)
        self._sync_lock_path = path + '.sync.lock'
        # The view of the brain precommit validates against.
        self._pods = {}          # pod id -> AZ
        self._pods_at = 0.0
        self._nets = {}          # neutron network id -> (time, brain net)
        self._macs = {}          # (brain net id, mac) -> (time, port id)
        self._view_lock = threading.Lock()
        # One lock per resource: the direct path after commit and the
        # journal worker never apply stale state over a newer one.
        self._res_locks = {}
        self._res_locks_lock = threading.Lock()
        self._wake = threading.Event()
        self._worker_pid = None
        self.last_sync = None    # (time, counts) of the last full sync
        for res, evs in ((resources.NETWORK, (events.BEFORE_CREATE,)),
                         (resources.PORT, (events.BEFORE_CREATE,
                                           events.BEFORE_UPDATE))):
            for ev in evs:
                registry.subscribe(self._before, res, ev)
        if conf.pod_segments:
            span.install_availability_zones(self._pod_azs)
        self._ensure_worker()
        LOG.info("l2span: brain %s, journal %s, %d pending",
                 ','.join(conf.brain_url), path, self.journal.pending())

    @property
    def connectivity(self):
        return portbindings.CONNECTIVITY_L2

    # ---------------------------------------------------------------- view

    def _before(self, resource, event, trigger, payload=None):
        """Refresh the brain view outside the DB transaction."""
        try:
            self._refresh_pods()
            if resource != resources.PORT or payload is None:
                return
            states = payload.states
            port = dict(states[0])
            if len(states) > 1:
                port.update(states[-1] or {})
            net_id = port.get('network_id')
            if not net_id:
                return
            bnet = self._view_network(net_id, refresh=True)
            mac = port.get('mac_address')
            if bnet and isinstance(mac, str) and mac:
                self._view_mac(bnet['id'], mac, refresh=True)
        except (brain_client.BrainError, brain_client.BrainUnavailable) as e:
            LOG.warning("l2span: brain view not refreshed: %s", e)

    def _refresh_pods(self, force=False):
        if not force and time.time() - self._pods_at < self.conf.view_ttl:
            return
        pods = self.client.list_all('/v1/pods')
        with self._view_lock:
            self._pods = {p['id']: p.get('az', '') for p in pods}
            self._pods_at = time.time()

    def _pod_azs(self):
        """{pod: az} for a network's availability_zones: the view, read
        once if this process has none yet."""
        if not self._pods_at:
            try:
                self._refresh_pods()
            except (brain_client.BrainError,
                    brain_client.BrainUnavailable) as e:
                LOG.warning("l2span: pods not read: %s", e)
        with self._view_lock:
            return dict(self._pods)

    def _view_network(self, net_id, refresh=False):
        with self._view_lock:
            hit = self._nets.get(net_id)
        if hit and not refresh and time.time() - hit[0] < self.conf.view_ttl:
            return hit[1]
        if not refresh:
            return hit[1] if hit else None
        bnet = self.client.find_network(net_id,
                                        timeout=self.conf.validate_timeout)
        with self._view_lock:
            self._nets[net_id] = (time.time(), bnet)
        return bnet

    def _view_mac(self, bnet_id, mac, refresh=False):
        key = (bnet_id, mac.lower())
        if refresh:
            page = self.client.request(
                'GET', '/v1/ports', query={'network_id': bnet_id,
                                           'mac': mac.lower(), 'limit': 1},
                timeout=self.conf.validate_timeout) or {}
            items = page.get('items') or []
            with self._view_lock:
                self._macs[key] = (time.time(),
                                   items[0]['id'] if items else None)
        with self._view_lock:
            hit = self._macs.get(key)
        return hit[1] if hit else None

    # ------------------------------------------------------------ pods

    def pod_for_host(self, host, profile=None, plugin_context=None):
        """The pod of a binding host: host_pod_map, else the AZ of the
        host's Neutron agents (or binding:profile availability_zone) if
        exactly one brain pod is in it."""
        if not host:
            return None
        m = self.conf.host_pod_map or {}
        if host in m:
            return m[host]
        for pattern in sorted(m):
            if fnmatch.fnmatchcase(host, pattern):
                return m[pattern]
        if not self.conf.az_fallback:
            return None
        az = None
        if isinstance(profile, dict):
            az = profile.get('availability_zone')
        if not az:
            az = self._host_az(host, plugin_context)
        if not az:
            return None
        with self._view_lock:
            pods = [p for p, z in self._pods.items() if z == az]
        return pods[0] if len(pods) == 1 else None

    def _host_az(self, host, plugin_context=None):
        plugin = directory.get_plugin()
        ctx = plugin_context or n_context.get_admin_context()
        try:
            agents = plugin.get_agents(ctx, filters={'host': [host]},
                                       fields=['availability_zone'])
        except Exception:  # noqa: no agent extension
            return None
        for a in agents:
            if a.get('availability_zone'):
                return a['availability_zone']
        return None

    # ------------------------------------------------------------ networks

    def _network_desired(self, net, segments=None):
        """The brain network a Neutron network should have. It carries
        Neutron's segment: the brain adopts the VLAN id (and physnet) or
        VNI Neutron's type driver allocated, so `openstack network show`
        prints the id every pod and gateway uses."""
        ntype, physnet, seg_id = neutron_segment(net, segments)
        btype = self.type_map.get(ntype)
        if not btype:
            return None
        # The brain keeps Neutron's id and name, so both print the same.
        d = {'id': net['id'], 'name': net.get('name') or '', 'type': btype,
             'managed_by': MANAGED_BY,
             'az_hints': sorted(set(net.get('availability_zone_hints')
                                    or [])),
             'external': bool(net.get('router:external'))}
        if btype == 'shared_vlan' and physnet:
            d['physical_network'] = physnet
            if ntype == 'vlan' and seg_id:
                d['segmentation_id'] = int(seg_id)
        elif btype in ('shared_vxlan', 'mixed_vlan_vxlan') and \
                ntype in OVERLAY_TYPES and seg_id:
            d['segmentation_id'] = int(seg_id)
        return d

    def _external_pod(self, hints, pods):
        """The one pod an external network is pinned to: its single hint
        is a pod id, or an availability zone holding exactly one pod.
        Returns (pod, None) or (None, why not)."""
        if len(hints) != 1:
            return None, ("an external network must be pinned to exactly "
                          "one l2span pod: give one "
                          "--availability-zone-hint, an availability zone "
                          "that holds exactly one pod (or a pod id)")
        hint = hints[0]
        if hint in pods:
            return hint, None
        in_az = sorted(p for p, az in pods.items() if az == hint)
        if len(in_az) == 1:
            return in_az[0], None
        if not in_az:
            return None, ('availability zone "%s" holds no l2span pod; an '
                          'external network needs an availability zone '
                          'with exactly one pod' % hint)
        return None, ('availability zone "%s" holds pods %s; an external '
                      'network needs an availability zone with exactly '
                      'one pod' % (hint, ', '.join(in_az)))

    def _check_network(self, d, label):
        if d is None:
            return
        with self._view_lock:
            pods, fresh = dict(self._pods), self._pods_at > 0
        if d['external']:
            if len(d['az_hints']) != 1 or fresh:
                pod, why = self._external_pod(d['az_hints'], pods)
                if pod is None:
                    raise L2spanBadRequest(msg="%s: %s" % (label, why))
            return
        if not fresh:
            return
        for h in d['az_hints']:
            if h not in pods.values():
                raise L2spanBadRequest(
                    msg='%s: availability zone "%s" holds no l2span pod'
                        % (label, h))

    def create_network_precommit(self, context):
        net = context.current
        self._check_network(self._network_desired(
            net, context.network_segments), _label('network', net))

    def create_network_postcommit(self, context):
        net = context.current
        self._forward(NETWORK, net['id'], {}, raise_user_error=True,
                      desired=self._network_desired(
                          net, context.network_segments),
                      label=_label('network', net))

    def update_network_precommit(self, context):
        net, orig = context.current, context.original or {}
        if bool(net.get('router:external')) != bool(
                orig.get('router:external')):
            d = self._network_desired(net, context.network_segments)
            self._check_network(d, _label('network', net))
            if d and d['external']:
                self._check_pinned_span(d, net)

    def _check_pinned_span(self, d, net):
        """A network made external must not already live outside the pod
        it is pinned to (the brain's copy says where it lives)."""
        with self._view_lock:
            pods = dict(self._pods)
        pod, _ = self._external_pod(d['az_hints'], pods)
        bnet = self._view_network(net['id'])
        if pod is None or not bnet:
            return
        out = sorted({g['pod_id'] for g in bnet.get('segments') or []
                      if g.get('pod_id') != pod})
        if out:
            raise L2spanConflict(
                msg="%s already has ports in pod(s) %s; an external network "
                    "lives in pod %s only" % (_label('network', net),
                                              ', '.join(out), pod))

    def update_network_postcommit(self, context):
        # Name and router:external reach the brain (type, segment and
        # az_hints cannot change in Neutron).
        net = context.current
        self._forward(NETWORK, net['id'], {}, desired=self._network_desired(
            net, context.network_segments))

    def delete_network_postcommit(self, context):
        self._forward(NETWORK, context.current['id'], {}, desired=None)

    def _network_body(self, desired):
        """The POST /v1/networks body: an external network's hint becomes
        the id of the pod it is pinned to."""
        body = dict(desired)
        if desired['external']:
            self._refresh_pods()
            with self._view_lock:
                pods = dict(self._pods)
            pod, why = self._external_pod(desired['az_hints'], pods)
            if pod is None:
                raise brain_client.BrainError(400, 'invalid', why,
                                              'az_hints')
            body['az_hints'] = [pod]
        return body

    def _apply_network(self, net_id, desired):
        bnet = self.client.find_network(net_id)
        if desired is None:
            if bnet:
                self._delete_learned_ports(bnet['id'])
                try:
                    self.client.request('DELETE',
                                        '/v1/networks/' + bnet['id'])
                except brain_client.BrainError as e:
                    if not e.not_found:
                        raise
            with self._view_lock:
                self._nets.pop(net_id, None)
            return
        if not bnet:
            bnet = self.client.request('POST', '/v1/networks',
                                       body=self._network_body(desired))
        else:
            bnet = self._update_network(bnet, desired)
        if desired.get('segmentation_id') and \
                bnet.get('segmentation_id') != desired['segmentation_id']:
            LOG.warning("l2span: network %s has segmentation id %s in "
                        "Neutron but %s in the brain (created before the "
                        "brain adopted Neutron's segments?)", net_id,
                        desired['segmentation_id'],
                        bnet.get('segmentation_id'))
        with self._view_lock:
            self._nets[net_id] = (time.time(), bnet)

    def _update_network(self, bnet, desired):
        """Bring name and router:external over to the brain network."""
        upd = {}
        if bnet.get('name') != desired['name'] and \
                bnet.get('id') == desired['id']:
            # (a network of an older driver keeps its Neutron-id name: the
            # full sync and lookups find it by that name)
            upd['name'] = desired['name']
        body = self._network_body(desired)
        if bool(bnet.get('external')) != desired['external'] or (
                desired['external'] and
                sorted(bnet.get('az_hints') or []) != body['az_hints']):
            upd['external'] = desired['external']
            upd['az_hints'] = body['az_hints']
        if not upd:
            return bnet
        return self.client.request('PUT', '/v1/networks/' + bnet['id'],
                                   body=upd)

    def _delete_learned_ports(self, bnet_id):
        """Ports the gateways learned go with a network Neutron deleted
        (they would keep the brain from deleting it)."""
        for p in self.client.list_all('/v1/ports', network_id=bnet_id):
            if p.get('device_owner') == LEARNED_OWNER:
                try:
                    self.client.request('DELETE', '/v1/ports/' + p['id'])
                except brain_client.BrainError as e:
                    if not e.not_found:
                        raise

    # ------------------------------------------------------------- subnets

    def _check_subnet(self, sub):
        gw = sub.get('gateway_ip')
        if not gw:
            return
        try:
            cidr = ipaddress.ip_network(sub['cidr'], strict=False)
            addr = ipaddress.ip_address(gw)
        except ValueError:
            return
        if addr not in cidr:
            raise L2spanBadRequest(msg="%s is not inside %s" % (addr, cidr))
        # IPv6 has no network address to protect: Neutron defaults the
        # gateway to the subnet-router anycast address, which is it.
        if cidr.version == 4 and addr == cidr.network_address and \
                cidr.prefixlen < cidr.max_prefixlen - 1:
            raise L2spanBadRequest(msg="%s is the network address of %s"
                                   % (addr, cidr))

    def create_subnet_precommit(self, context):
        self._check_subnet(context.current)

    def create_subnet_postcommit(self, context):
        sub = context.current
        self._forward(SUBNET, sub['id'], _subnet_extra(sub),
                      raise_user_error=True, desired=_subnet_extra(sub),
                      label=_label('subnet', sub))

    def update_subnet_precommit(self, context):
        self._check_subnet(context.current)

    def update_subnet_postcommit(self, context):
        sub = context.current
        self._forward(SUBNET, sub['id'], _subnet_extra(sub),
                      desired=_subnet_extra(sub))

    def delete_subnet_postcommit(self, context):
        sub = context.current
        self._forward(SUBNET, sub['id'], _subnet_extra(sub), desired=None)

    def _apply_subnet(self, sub_id, extra, desired):
        """The brain subnet has Neutron's id. A retry after a create that
        reached the brain (a timeout, a lost answer) finds it there and is
        done, so it never reports a clash with itself."""
        bnet = self.client.find_network(extra['network_id'])
        if bnet is None:
            if desired is None:
                return
            raise _Transient("network %s is not in the brain yet"
                             % extra['network_id'])
        cidr = str(ipaddress.ip_network(extra['cidr'], strict=False))
        want_gw = (desired or {}).get('gateway_ip') or ''
        try:
            have = self.client.request('GET', '/v1/subnets/' + sub_id)
        except brain_client.BrainError as e:
            if not e.not_found:
                raise
            have = None
        # A subnet of an older driver has the brain's own id: found by CIDR.
        stale = [s for s in self.client.list_all('/v1/subnets',
                                                 network_id=bnet['id'])
                 if s.get('cidr') == cidr and s['id'] != sub_id]
        if have and (desired is None or have.get('cidr') != cidr or
                     (have.get('gateway_ip') or '') != want_gw):
            stale.append(have)
            have = None
        for s in stale:
            try:
                self.client.request('DELETE', '/v1/subnets/' + s['id'])
            except brain_client.BrainError as e:
                if not e.not_found:
                    raise
        if desired is None or have:
            return
        body = {'id': sub_id, 'network_id': bnet['id'], 'cidr': cidr}
        if want_gw:
            body['gateway_ip'] = want_gw
        self.client.request('POST', '/v1/subnets', body=body)

    # --------------------------------------------------------------- ports

    def _port_desired(self, port, plugin_context=None):
        pod = self.pod_for_host(port.get(portbindings.HOST_ID),
                                port.get(portbindings.PROFILE),
                                plugin_context)
        if not pod:
            return None
        return {'network_id': port['network_id'], 'pod_id': pod,
                'mac': port['mac_address'].lower(),
                'ips': [ip['ip_address'] for ip in port.get('fixed_ips')
                        or []],
                'device_owner': port.get('device_owner') or ''}

    def _check_port(self, context):
        """Refuse, inside the transaction, a binding the brain would refuse.
        The scope comes from Neutron's own copy of the network (its
        availability_zone_hints and router:external) and the pod's AZ from
        the pod view or, failing that, the host's Neutron agents, so a port
        outside the scope is refused even while the brain is down."""
        port = context.current
        net = context.network.current
        host = port.get(portbindings.HOST_ID)
        desired = self._port_desired(port, context._plugin_context)
        if desired is None:
            if host and self._refuses_unmapped(port):
                msg = ('host "%s" of %s maps to no l2span pod: add it to '
                       '[l2span] host_pod_map, or give its Neutron agents '
                       'an availability zone that holds exactly one pod'
                       % (host, _label('port', port)))
                LOG.warning("l2span: %s", msg)
                raise L2spanBadRequest(msg=msg)
            return
        pod = desired['pod_id']
        label = _label('network', net)
        with self._view_lock:
            pod_az = self._pods.get(pod)
            known = self._pods_at > 0
        if known and pod_az is None:
            raise L2spanBadRequest(msg="pod %s of host %s is not in l2span"
                                   % (pod, host))
        if pod_az is None:
            pod_az = self._host_az(host, context._plugin_context)
        hints = sorted(set(net.get('availability_zone_hints') or []))
        if net.get('router:external'):
            # Pinned by its one hint: a pod id, or the AZ of its one pod.
            if hints and pod != hints[0] and pod_az is not None and \
                    pod_az != hints[0]:
                with self._view_lock:
                    pinned, _ = self._external_pod(hints, dict(self._pods))
                raise L2spanConflict(
                    msg="external %s lives in pod %s only (availability "
                        "zone hint %s); pod %s (host %s) is outside it" % (
                            label, pinned or '?', hints[0], pod, host))
        elif hints and pod_az is not None and pod_az not in hints:
            raise L2spanConflict(
                msg="pod %s (host %s) is in availability zone %s, outside "
                    "%s's availability zones %s" % (
                        pod, host, pod_az, label, _go_list(hints)))
        bnet = self._view_network(port['network_id'])
        if bnet is None:
            return
        if bnet.get('type') == 'local':
            pods = [g['pod_id'] for g in bnet.get('segments') or []]
            if pods and pod not in pods:
                raise L2spanConflict(
                    msg="%s is local and already lives in pod %s; it "
                        "cannot reach pod %s" % (label, pods[0], pod))
        owner = self._view_mac(bnet['id'], desired['mac'])
        if owner and owner != port['id']:
            raise L2spanConflict(
                msg="MAC %s is already used by another port of %s"
                    % (desired['mac'], label))

    def _refuses_unmapped(self, port):
        """A VM port (Nova's device_owner compute:*) on a host in no pod
        is refused when refuse_unmapped_hosts is set."""
        return (self.conf.refuse_unmapped_hosts and
                (port.get('device_owner') or '').startswith('compute:'))

    def create_port_precommit(self, context):
        self._check_port(context)

    def update_port_precommit(self, context):
        self._check_port(context)

    def create_port_postcommit(self, context):
        self._port_changed(context)

    def update_port_postcommit(self, context):
        self._port_changed(context)

    def _port_changed(self, context):
        port = context.current
        desired = self._port_desired(port, context._plugin_context)
        orig = context.original
        if desired is None and (orig is None or self._port_desired(
                orig, context._plugin_context) is None):
            return  # never bound to a pod: nothing in the brain
        self._forward(PORT, port['id'], {}, desired=desired)

    def delete_port_postcommit(self, context):
        self._forward(PORT, context.current['id'], {}, desired=None)

    def _apply_port(self, port_id, desired):
        try:
            have = self.client.request('GET', '/v1/ports/' + port_id)
        except brain_client.BrainError as e:
            if not e.not_found:
                raise
            have = None
        try:
            self._apply_port_to(port_id, desired, have)
        finally:
            if self.conf.pod_segments:
                nets = {desired['network_id']} if desired else set()
                if have:
                    nets.add(have['network_id'])
                for net_id in nets:
                    self._sync_span(net_id)

    def _sync_span(self, net_id, bnet=None):
        """Mirror the brain network's per-pod segments into Neutron; a
        failure waits for the full sync."""
        try:
            bnet = bnet or self.client.find_network(net_id)
            nid = _neutron_id(bnet) if bnet else None
            if nid:
                span.sync(n_context.get_admin_context(), nid, bnet)
        except Exception as e:  # noqa: the full sync repairs it
            LOG.warning("l2span: segments of network %s not mirrored: %s",
                        net_id, e)

    def _apply_port_to(self, port_id, desired, have):
        if have and (desired is None
                     or have.get('mac') != desired['mac']
                     or not self._same_network(have, desired)):
            try:
                self.client.request('DELETE', '/v1/ports/' + port_id)
            except brain_client.BrainError as e:
                if not e.not_found:
                    raise
            have = None
        if desired is None:
            return
        bnet = self.client.find_network(desired['network_id'])
        if bnet is None:
            raise _Transient("network %s is not in the brain yet"
                             % desired['network_id'])
        if have is None:
            body = dict(desired, id=port_id, network_id=bnet['id'])
            self.client.request('POST', '/v1/ports', body=body)
            return
        upd = {}
        if have.get('pod_id') != desired['pod_id']:
            upd['pod_id'] = desired['pod_id']
        if sorted(have.get('ips') or []) != sorted(desired['ips']):
            upd['ips'] = desired['ips']
        if upd:
            self.client.request('PUT', '/v1/ports/' + port_id, body=upd)

    def _same_network(self, have, desired):
        bnet = self._view_network(desired['network_id'])
        return bnet is None or have.get('network_id') == bnet['id']

    # ------------------------------------------------------------- binding

    def bind_port(self, context):
        port = context.current
        pod = self.pod_for_host(context.host, port.get(portbindings.PROFILE),
                                context._plugin_context)
        if not pod:
            # ML2 then marks the port binding_failed.
            LOG.warning("l2span: not binding port %s: host %s maps to no "
                        "l2span pod (add it to [l2span] host_pod_map, or "
                        "give its agents an availability zone with one pod)",
                        port['id'], context.host)
            return
        for seg in context.segments_to_bind:
            context.set_binding(
                seg[api.ID], portbindings.VIF_TYPE_OTHER,
                {portbindings.VIF_DETAILS_CONNECTIVITY:
                 portbindings.CONNECTIVITY_L2, 'l2span_pod': pod},
                status='ACTIVE')
            return

    # ------------------------------------------------ forwarding + journal

    def _res_lock(self, kind, res_id):
        with self._res_locks_lock:
            lk = self._res_locks.get((kind, res_id))
            if lk is None:
                lk = self._res_locks[(kind, res_id)] = threading.Lock()
            return lk

    def _apply(self, kind, res_id, extra, desired):
        if kind == NETWORK:
            self._apply_network(res_id, desired)
        elif kind == SUBNET:
            self._apply_subnet(res_id, extra, desired)
        elif kind == PORT:
            self._apply_port(res_id, desired)

    def _forward(self, kind, res_id, extra, desired, raise_user_error=False,
                 label=None):
        self._ensure_worker()
        with self._res_lock(kind, res_id):
            try:
                self._apply(kind, res_id, extra, desired)
                return
            except brain_client.BrainError as e:
                if raise_user_error and e.user_error and desired is not None:
                    LOG.error("l2span: brain refused %s %s: %s", kind,
                              res_id, e.brain_message)
                    # A Neutron error, so the user gets the brain's 4xx
                    # (ML2 then deletes what it created), not a bare 500.
                    raise _neutron_error(e, label or '%s %s' % (kind,
                                                                res_id))
                err = e
            except (brain_client.BrainUnavailable, _Transient) as e:
                err = e
        LOG.warning("l2span: %s %s journaled for retry: %s", kind, res_id,
                    err)
        self.journal.add(kind, res_id, extra, err)
        self._wake.set()

    def _current(self, kind, res_id, extra):
        """Neutron's current state of a resource, as the brain wants it."""
        plugin = directory.get_plugin()
        ctx = n_context.get_admin_context()
        try:
            if kind == NETWORK:
                return self._network_desired(plugin.get_network(ctx, res_id))
            if kind == SUBNET:
                return _subnet_extra(plugin.get_subnet(ctx, res_id))
            if kind == PORT:
                return self._port_desired(plugin.get_port(ctx, res_id), ctx)
        except n_exc.NotFound:
            return None
        return None

    def retry_journal(self):
        """Retry every due journal entry once; returns how many are left."""
        for kind, res_id, extra, attempts in self.journal.due():
            with self._res_lock(kind, res_id):
                try:
                    desired = self._current(kind, res_id, extra)
                    if kind == SUBNET and desired is not None:
                        extra = desired
                    self._apply(kind, res_id, extra, desired)
                except Exception as e:  # noqa: retried with backoff
                    self.journal.failed(kind, res_id, e,
                                        base=self.conf.retry_interval)
                    # A refusal (e.g. a segment another brain network
                    # holds, for a network made while the brain was down)
                    # needs an operator: say so louder than a retry.
                    log = LOG.error if isinstance(
                        e, brain_client.BrainError) and e.user_error \
                        else LOG.warning
                    log("l2span: retry %d of %s %s failed: %s",
                        attempts + 1, kind, res_id, e)
                    continue
            self.journal.done(kind, res_id)
            LOG.info("l2span: %s %s synced to the brain after %d retries",
                     kind, res_id, attempts + 1)
        return self.journal.pending()

    def _ensure_worker(self):
        if self._worker_pid == os.getpid():
            return
        self._worker_pid = os.getpid()
        t = threading.Thread(target=self._work, name='l2span-journal',
                             daemon=True)
        t.start()

    def _work(self):
        next_sync = time.time() + (5 if self.conf.sync_on_start else
                                   self.conf.sync_interval)
        while True:
            self._wake.wait(self.conf.retry_interval)
            self._wake.clear()
            try:
                self.retry_journal()
            except Exception:  # noqa: the worker must live on
                LOG.exception("l2span: journal retry failed")
            if self.conf.sync_interval > 0 and time.time() >= next_sync:
                next_sync = time.time() + self.conf.sync_interval
                try:
                    self.full_sync()
                except Exception as e:  # noqa: next time
                    LOG.warning("l2span: full sync failed: %s", e)

    # ----------------------------------------------------------- full sync

    def full_sync(self):
        """Make the brain match all of Neutron: create what is missing,
        update what differs, delete what Neutron no longer has (only brain
        networks named after a Neutron id, and never learned ports). Runs
        in one process per host at a time (a lock file)."""
        lockf = open(self._sync_lock_path, 'a')
        try:
            try:
                fcntl.flock(lockf, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return None
            return self._full_sync()
        finally:
            lockf.close()

    def _brain_networks(self):
        """The brain networks this driver made, by Neutron id."""
        out = {}
        for n in self.client.list_all('/v1/networks'):
            nid = _neutron_id(n)
            if nid:
                out[nid] = n
        return out

    def _full_sync(self):
        began = time.time()
        plugin = directory.get_plugin()
        ctx = n_context.get_admin_context()
        self._refresh_pods(force=True)
        counts = {'created': 0, 'updated': 0, 'deleted': 0, 'failed': 0}

        def run(kind, res_id, extra, desired, what):
            with self._res_lock(kind, res_id):
                try:
                    self._apply(kind, res_id, extra, desired)
                    counts[what] += 1
                except Exception as e:  # noqa: journaled, next sync again
                    counts['failed'] += 1
                    self.journal.add(kind, res_id, extra, e)

        want_nets = {}
        for net in plugin.get_networks(ctx):
            d = self._network_desired(net)
            if d:
                want_nets[net['id']] = d
        bnets = self._brain_networks()
        for nid, d in want_nets.items():
            b = bnets.get(nid)
            if b is None:
                run(NETWORK, nid, {}, d, 'created')
            elif _network_differs(b, d):
                run(NETWORK, nid, {}, d, 'updated')
        bnets = self._brain_networks()
        by_bid = {n['id']: name for name, n in bnets.items()}

        want_subs = {}
        for sub in plugin.get_subnets(ctx):
            if sub['network_id'] in want_nets:
                e = _subnet_extra(sub)
                e['cidr'] = str(ipaddress.ip_network(e['cidr'], strict=False))
                want_subs[(sub['network_id'], e['cidr'])] = (sub['id'], e)
        have_subs = {}
        for s in self.client.list_all('/v1/subnets'):
            if s['network_id'] in by_bid:
                have_subs[(by_bid[s['network_id']], s['cidr'])] = s
        for key, (sid, e) in want_subs.items():
            h = have_subs.get(key)
            if h is None or (h.get('gateway_ip') or '') != e['gateway_ip'] \
                    or h['id'] != sid:
                run(SUBNET, sid, e, e, 'created' if h is None else 'updated')

        want_ports = {}
        for port in plugin.get_ports(ctx):
            if port['network_id'] in want_nets:
                d = self._port_desired(port, ctx)
                if d:
                    want_ports[port['id']] = d
        have_ports = {p['id']: p for p in self.client.list_all('/v1/ports')
                      if p['network_id'] in by_bid}
        for pid, p in have_ports.items():
            # Learned by gateways, or reserved by the brain for a pod's own
            # DHCP/gateway port: not Neutron's, never deleted by the sync.
            if p.get('device_owner') == LEARNED_OWNER or p.get('reserved'):
                continue
            if pid not in want_ports:
                run(PORT, pid, {}, None, 'deleted')
        for pid, d in want_ports.items():
            h = have_ports.get(pid)
            if (h is None or h.get('pod_id') != d['pod_id']
                    or h.get('mac') != d['mac']
                    or sorted(h.get('ips') or []) != sorted(d['ips'])
                    or by_bid.get(h['network_id']) != d['network_id']):
                run(PORT, pid, {}, d, 'created' if h is None else 'updated')

        for (nid, cidr), s in have_subs.items():
            if nid in want_nets and (nid, cidr) not in want_subs:
                with self._res_lock(SUBNET, s['id']):
                    try:
                        self.client.request('DELETE',
                                            '/v1/subnets/' + s['id'])
                        counts['deleted'] += 1
                    except Exception as e:  # noqa
                        counts['failed'] += 1
                        LOG.warning("l2span: sync: delete subnet %s: %s",
                                    s['id'], e)
        for name in bnets:
            if name not in want_nets:
                # (its learned ports go with it: _apply_network)
                run(NETWORK, name, {}, None, 'deleted')
        if self.conf.pod_segments:
            for nid, bnet in self._brain_networks().items():
                if nid in want_nets:
                    self._sync_span(nid, bnet)
        self.last_sync = (time.time(), counts)
        LOG.info("l2span: full sync in %.2fs: %s", time.time() - began,
                 counts)
        return counts


def _network_differs(bnet, desired):
    """Whether the brain network lacks a Neutron attribute the driver
    keeps in step (name, router:external)."""
    if bool(bnet.get('external')) != desired['external']:
        return True
    return bnet['id'] == desired['id'] and \
        bnet.get('name') != desired['name']


def _neutron_id(bnet):
    """The Neutron id of a brain network the driver made: its id, or its
    name for one made by an older driver; None if not Neutron's."""
    if bnet.get('managed_by') == MANAGED_BY:
        return bnet['id']
    if UUID_RE.match(bnet.get('name') or ''):
        return bnet['name']
    return None


def _label(kind, res):
    """How a user names a Neutron resource in a message: its name (what
    they typed) and id."""
    if res.get('name'):
        return '%s "%s" (%s)' % (kind, res['name'], res['id'])
    return '%s %s' % (kind, res['id'])


def _neutron_error(err, label):
    msg = 'l2span refused %s: %s%s' % (
        label, err.field + ': ' if err.field else '', err.brain_message)
    if err.status == 409:
        return L2spanConflict(msg=msg)
    return L2spanBadRequest(msg=msg)


def _subnet_extra(sub):
    return {'network_id': sub['network_id'], 'cidr': sub['cidr'],
            'gateway_ip': sub.get('gateway_ip') or ''}
