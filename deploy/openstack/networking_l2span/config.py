# Copyright l2span authors. Licensed under the Apache License 2.0.
"""The [l2span] configuration group."""

from oslo_config import cfg

GROUP = 'l2span'

DEFAULT_TYPE_MAP = ['vxlan:shared_vxlan', 'geneve:shared_vxlan',
                    'gre:shared_vxlan', 'vlan:shared_vlan',
                    'flat:mixed_vlan_vxlan', 'local:local']

OPTS = [
    cfg.ListOpt('brain_url', default=[],
                help='URL(s) of the l2span brain API, e.g. '
                     'https://brain1:9696,https://brain2:9696; a request '
                     'that cannot reach one tries the next.'),
    cfg.StrOpt('token', secret=True,
               help='Bearer token the brain expects (its --token-file).'),
    cfg.StrOpt('ca_file',
               help='CA bundle to verify an https brain_url.'),
    cfg.BoolOpt('insecure', default=False,
                help='Do not verify the brain\'s TLS certificate.'),
    cfg.FloatOpt('timeout', default=10.0,
                 help='Seconds for one brain request made after a commit '
                      'and by the journal worker.'),
    cfg.FloatOpt('validate_timeout', default=2.0,
                 help='Seconds for the brain reads made before a DB '
                      'transaction to refresh the view that *_precommit '
                      'validates against. On timeout the cached view is '
                      'used.'),
    cfg.FloatOpt('view_ttl', default=30.0,
                 help='Seconds a cached brain view (pods, networks) is '
                      'fresh enough to validate against without a new read.'),
    cfg.DictOpt('host_pod_map', default={},
                help='Binding host to pod id, e.g. '
                     'compute-a1:pod1,compute-b*:pod2 (fnmatch patterns '
                     'allowed; exact names win).'),
    cfg.BoolOpt('az_fallback', default=True,
                help='For a host not in host_pod_map, use the availability '
                     'zone of the host\'s Neutron agents (or the port\'s '
                     'binding:profile availability_zone) and pick the one '
                     'brain pod in that AZ.'),
    cfg.ListOpt('network_type_map', default=DEFAULT_TYPE_MAP,
                help='Neutron network type to brain network type '
                     '(local, shared_vlan, shared_vxlan, mixed_vlan_vxlan). '
                     'A network of an unmapped type is not sent to the '
                     'brain.'),
    cfg.StrOpt('journal_path',
               help='SQLite file of the journal of brain calls that failed '
                    'for a transient reason (default: '
                    '$state_path/l2span-journal.db).'),
    cfg.FloatOpt('retry_interval', default=2.0,
                 help='Seconds between journal retries (doubling up to 60).'),
    cfg.IntOpt('sync_interval', default=300,
               help='Seconds between full syncs Neutron -> brain (creates, '
                    'updates and deletes what drifted); 0 disables.'),
    cfg.BoolOpt('sync_on_start', default=True,
                help='Run a full sync a few seconds after start.'),
    cfg.BoolOpt('refuse_unmapped_hosts', default=True,
                help='Refuse (400, naming the host) a compute port bound to '
                     'a host that maps to no l2span pod. False: the port '
                     'ends binding_failed and the reason is logged '
                     '(WARNING).'),
    cfg.BoolOpt('pod_segments', default=True,
                help='Record the per-pod segments the brain reports as '
                     'Neutron segments of the network (physical_network '
                     'bottom_physnet#pod), so `openstack network segment '
                     'list` and the network\'s availability_zones show '
                     'its span.'),
]


def register_opts(conf=cfg.CONF):
    conf.register_opts(OPTS, GROUP)


def list_opts():
    """oslo-config-generator entry point."""
    return [(GROUP, OPTS)]


def type_map(conf=cfg.CONF):
    out = {}
    for item in conf.l2span.network_type_map:
        k, _, v = item.partition(':')
        if k and v:
            out[k.strip()] = v.strip()
    return out
