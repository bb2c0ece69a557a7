"""Activation memory of a lowered module: no reuse vs TVM's liveness-based static plan vs
the liveness lower bound, on a chain whose sizes make each of them known."""
from nnforge.codegen.cpu import lower
from nnforge.codegen.kernel import CpuTarget
from nnforge.codegen.memory_plan import activation_memory
from nnforge.ir import Graph, TensorType


def test_static_plan_reuses_dead_buffers():
    g = Graph("g")
    x = g.add_input("x", TensorType("float32", (1, 8, 16, 16)))
    a, = g.add_node("Relu", [x])
    b, = g.add_node("Sigmoid", [a])
    c, = g.add_node("Tanh", [b])
    d, = g.add_node("Add", [c, a])  # a stays live until here
    e, = g.add_node("MaxPool", [d], {"kernel_shape": (2, 2), "strides": (2, 2)})
    g.set_outputs(g.add_node("Relu", [e]))
    big, small = a.type.nbytes, e.type.nbytes
    mem = activation_memory(lower(g, CpuTarget.host()).mod)
    assert mem.tensors == 6 and mem.unplanned == 4 * big + 2 * small
    assert mem.lower_bound == 3 * big  # a, c and d live at the Add
    # sigmoid's buffer is free again at the Add and tanh's at the MaxPool: 3 big buffers + the output
    assert mem.lower_bound <= mem.planned == 3 * big + small < mem.unplanned
