# Copyright l2span authors. Licensed under the Apache License 2.0.
"""networking-l2span: a Neutron ML2 mechanism driver feeding the l2span brain."""
