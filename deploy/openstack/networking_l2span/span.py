# Copyright l2span authors. Licensed under the Apache License 2.0.
"""The span of a network, shown in Neutron.

The brain adds a segment to a network when a port is bound in a new pod and
removes it when the last one leaves. The driver mirrors those segments into
the top Neutron as *dynamic* segments of the network (``physical_network``
``bottom_physnet#pod``, or ``#pod`` when the pod's segment has no physical
network, as for VXLAN), so ``openstack network segment list --network X``
lists one segment per pod, and adds the pods' availability zones to the
network's ``availability_zones``.

Why dynamic segments written with ML2's own ``segments_db`` helpers, and not
``POST /v2.0/segments`` (the segments plugin): that path reserves the
segment in the top Neutron's type drivers, which refuse a physical network
they do not know (``physnet1#pod1``) and would take a pod's VLAN or the
network's own VNI out of the top's pools a second time. A pod's segment
belongs to the pod; the top only records it (Tricircle shipped its own type
drivers for the same reason). Dynamic segments are what ML2 uses for
segments a mechanism driver adds: they are listed by the segments API, but
not offered for port binding and not folded into the network's provider
attributes, so ``network show`` keeps Neutron's own segment. They are
removed with the network.
"""

from neutron.db import segments_db
from neutron.objects import network as network_obj
from neutron.plugins.ml2 import plugin as ml2_plugin
from neutron_lib.db import api as db_api
from oslo_log import log as logging

LOG = logging.getLogger(__name__)

POD_SEP = '#'


def pod_of(physical_network):
    """The pod a mirrored segment is in, or None for Neutron's own."""
    if physical_network and POD_SEP in physical_network:
        return physical_network.rsplit(POD_SEP, 1)[1] or None
    return None


def wanted(bnet):
    """The Neutron segments (type, physical_network, segmentation_id) a
    brain network's per-pod segments become."""
    out = set()
    for g in (bnet or {}).get('segments') or []:
        pod = g.get('pod_id')
        if not pod:
            continue
        ntype = g.get('network_type') or ''
        seg_id = g.get('segmentation_id') or None
        if not ntype:
            # A mixed network's pod that has not reported its bottom
            # segment yet: joined through the overlay VNI.
            ntype, seg_id = 'vxlan', bnet.get('segmentation_id') or None
        if ntype == 'local':
            seg_id = None
        phys = g.get('physical_network') or ''
        if pod_of(phys) != pod:
            phys = POD_SEP + pod
        out.add((ntype, phys, seg_id))
    return out


def sync(context, network_id, bnet):
    """Make the network's mirrored segments match the brain's; returns
    (added, removed)."""
    want = wanted(bnet)
    added = removed = 0
    with db_api.CONTEXT_WRITER.using(context):
        have = [s for s in network_obj.NetworkSegment.get_objects(
                    context, network_id=network_id, is_dynamic=True)
                if pod_of(s.physical_network)]
        keys = set()
        for s in have:
            key = (s.network_type, s.physical_network, s.segmentation_id)
            if key in want and key not in keys:
                keys.add(key)
                continue
            # Removed without the type drivers: the pod's id was never
            # reserved in the top (and a VXLAN pod segment carries the
            # network's own VNI, which must stay reserved).
            s.delete()
            removed += 1
        index = 1 + len(keys)
        for ntype, phys, seg_id in sorted(want - keys,
                                          key=lambda k: k[1]):
            segments_db.add_network_segment(
                context, network_id,
                {'network_type': ntype, 'physical_network': phys,
                 'segmentation_id': seg_id},
                segment_index=index, is_dynamic=True)
            index += 1
            added += 1
    if added or removed:
        LOG.info("l2span: network %s spans %s (%d segment(s) added, %d "
                 "removed)", network_id,
                 ', '.join(sorted(pod_of(k[1]) for k in want)) or 'no pod',
                 added, removed)
    return added, removed


def install_availability_zones(pod_azs):
    """Add the AZs of the pods a network spans (its mirrored segments) to
    the network's availability_zones. pod_azs() returns {pod: az}.
    Neutron computes the attribute from the network's DHCP agents through
    the core plugin's get_network_availability_zones; the OVN driver
    replaces it the same way."""
    cls = ml2_plugin.Ml2Plugin
    if getattr(cls, '_l2span_azs', False):
        return
    orig = cls.get_network_availability_zones

    def get_network_availability_zones(self, network):
        zones = set(orig(self, network))
        pods = [pod_of(s.physical_network)
                for s in getattr(network, 'segments', None) or []]
        pods = [p for p in pods if p]
        if pods:
            azs = pod_azs()
            zones.update(azs[p] for p in pods if azs.get(p))
        return sorted(zones)

    cls.get_network_availability_zones = get_network_availability_zones
    cls._l2span_azs = True
