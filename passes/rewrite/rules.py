"""The rewrite rule table: every rule the engine knows, in one list (`RULES`).

Each row is `rule(name, lhs, rhs, when=..., let=..., ex=[...], nex=[...])  # comment`.
`ex` are the examples the verifier proves (z3) and tests (interpreter) the rule on;
`nex` are instantiations the precondition must reject. See engine.Rule.
"""
from __future__ import annotations

import numpy as np

from .engine import Rule, Sym
from .symbolic import rsqrt

F32 = np.float32


def rule(name, lhs, rhs, when=None, let=None, ex=(), nex=(), doc=""):
    return Rule(name, lhs, rhs, when, let, tuple(ex), tuple(nex), doc)


# -- precondition helpers --------------------------------------------------------
def const(*names):
    """All named tensor variables are constants."""
    return lambda m: all(m[n].is_constant for n in names)


def filled(name, value):
    """`name` is a constant whose every element equals `value`."""
    return lambda m: m[name].is_constant and bool(np.all(m[name].data == value))


def keeps_type(name):
    """Replacing the match by `name` keeps the type (broadcasting did not grow it)."""
    return lambda m: m.targets[0].type == m[name].type


def both(*conds):
    return lambda m: all(c(m) for c in conds)


def per_channel(name, channels_at=1):
    """`name` is a constant that broadcasts along one channel axis of a rank-4 output
    (shape [C,1,1], [1,C,1,1], [1], or scalar)."""
    def ok(m):
        s = m[name].type.shape
        return m[name].is_constant and len(s) <= 4 and all(
            d == 1 for i, d in enumerate((1,) * (4 - len(s)) + s) if i != channels_at)
    return ok


def channel_vector(m, name, channels):
    """The per-channel constant `name` as a length-`channels` vector (works on z3 arrays)."""
    d = m[name].data
    return np.broadcast_to(d.reshape(-1), (channels,)) if d.size == 1 else d.reshape(-1)


def like(array, value):
    """`array` cast to `value`'s dtype (left alone when it holds z3 terms)."""
    a = np.asarray(array)
    return a if a.dtype == object else np.ascontiguousarray(a, dtype=value.type.dtype)


def private(m):
    """Every value the match computes besides its targets is used only inside the match (a
    fusion must not leave the unfused node alive for another user: that would add work)."""
    users, inside = m.graph.users(), {id(n) for n in m.nodes}
    targets, outputs = {id(t) for t in m.targets}, {id(v) for v in m.graph.outputs}
    return all(id(v) not in outputs and all(id(u) in inside for u in users.get(v.name, ()))
               for n in m.nodes for v in n.outputs if id(v) not in targets)


def rank(name, r):
    return lambda m: m[name].type.rank == r


def group1(m):
    return m["a"]["group"] == 1


# -- let helpers (new constants and attributes) ----------------------------------
def _bn_scale(m):
    return m["g"].data * rsqrt(m["v"].data + m["e"])


def _fold_bn(m):
    s = _bn_scale(m)
    bias = m["cb"].data if "cb" in m else 0.0
    return {"w2": like(m["w"].data * s.reshape(-1, 1, 1, 1), m["w"]),
            "b2": like((bias - m["mu"].data) * s + m["b"].data, m["g"])}


def _conv_bias_add(m):
    c = channel_vector(m, "c", m["w"].type.shape[0])
    base = m["cb"].data if "cb" in m else 0.0
    return {"b2": like(base + c, m["w"])}


def _conv_mul(m):
    c = channel_vector(m, "c", m["w"].type.shape[0])
    out = {"w2": like(m["w"].data * c.reshape(-1, 1, 1, 1), m["w"])}
    if "cb" in m:
        out["b2"] = like(m["cb"].data * c, m["w"])
    return out


def _residual(m):
    """`r` is a run-time tensor of the conv's output type (a constant folds into the bias
    instead; a larger r would broadcast the conv output)."""
    conv = next(n for n in m.nodes if n.op == "Conv")
    return not m["r"].is_constant and m["r"].type == conv.outputs[0].type


def _zero_bias(m):
    return {"b0": like(np.zeros(m["w"].type.shape[0]), m["w"])}


def _concat_consts(*names, axis=0):
    return lambda m: {"wc": like(np.concatenate([m[n].data for n in names], axis=axis), m[names[0]])}


def _merge_convs(m):
    out = _concat_consts("w1", "w2")(m)
    out["s"] = (m["w1"].type.shape[0], m["w2"].type.shape[0])
    if "b1" in m:
        out["bc"] = like(np.concatenate([m["b1"].data, m["b2"].data]), m["b1"])
    return out


def _merge_matmuls(m):
    out = _concat_consts("w1", "w2", axis=1)(m)
    out.update(k=m.targets[0].type.rank - 1, s=(m["w1"].type.shape[1], m["w2"].type.shape[1]))
    return out


def _gemm_merge_ok(m):
    return (m["a"]["transB"] == 0 and const("w1", "w2", "b1", "b2")(m)
            and m["b1"].type.rank == m["b2"].type.rank == 1)


def _merge_into_split(m):
    out = _concat_consts("w1", "w2", axis=1)(m)
    out["s2"] = tuple(m["s"]) + (m["w2"].type.shape[1],)
    return out


def _fold(m):
    from .symbolic import run_op
    from ...ir import get_op

    arrays = [x.data for x in m["xs"]]
    if any(np.asarray(a).dtype == object for a in arrays):
        return {"y": run_op(m["op"], arrays, m["a"])[0]}
    return {"y": get_op(m["op"]).run(arrays, m["a"])[0].astype(m.targets[0].type.dtype)}


def _split_source(m):
    return {"x": m["xs"][0].producer.inputs[0]}


def _is_split_parts(m):
    node = m["xs"][0].producer
    return (node is not None and node.op == "Split" and node.attrs["axis"] == m["k"]
            and len(m["xs"]) == len(node.outputs) and all(a is b for a, b in zip(m["xs"], node.outputs)))


def _conv_pad(m):
    p, r = m["p"], len(m["p"]) // 2
    a = dict(m["a"])
    a["pads"] = (a["pads"][0] + p[2], a["pads"][1] + p[3], a["pads"][2] + p[r + 2], a["pads"][3] + p[r + 3])
    return {"a2": a}


def _enlarge_ok(m):
    """A 1x1, unpadded, undilated conv with constant weights, and a 3x3 "same" conv with the
    same stride on the same input that it could merge with once enlarged."""
    a, b = m["a"], m["b"]
    return (m["w"].is_constant and m["w"].type.shape[2:] == (1, 1) and not any(a["pads"])
            and tuple(a["dilations"]) == (1, 1) and m["v"].type.shape[2:] == (3, 3)
            and tuple(b["pads"]) == (1, 1, 1, 1) and tuple(b["dilations"]) == (1, 1)
            and tuple(a["strides"]) == tuple(b["strides"]))


def _enlarge_to_3x3(m):
    """The 1x1 weight zero-padded to 3x3 (works on z3 object arrays), and pads 1 all round."""
    w = m["w"].data
    w3 = np.zeros(w.shape[:2] + (3, 3), dtype=w.dtype if w.dtype == object else m["w"].type.dtype)
    w3[:, :, 1:2, 1:2] = w
    return {"w3": like(w3, m["w"]), "a3": {**m["a"], "pads": (1, 1, 1, 1)}}


def _batched_rows(axis_of):
    """Precondition of batching two ops that share their weight: the inputs differ only along
    `axis_of(x)` (the rows of a MatMul, the batch of a Conv); a Conv's residual is not batched."""
    def ok(m):
        k, s1, s2 = axis_of(m["x1"]), m["x1"].type.shape, m["x2"].type.shape
        return (len(s1) == len(s2) >= 2 and m["x1"].type.dtype == m["x2"].type.dtype
                and s1[:k] + s1[k + 1:] == s2[:k] + s2[k + 1:] and len(m.get("bs", ())) <= 1)
    return ok


def _batched_split(axis_of):
    return lambda m: {"k": axis_of(m["x1"]), "s": (m["x1"].type.shape[axis_of(m["x1"])],
                                                   m["x2"].type.shape[axis_of(m["x2"])])}


def _matmul_rows(x):
    return x.type.rank - 2


def _conv_batch(x):
    return 0


def _pads_hw_only(m):
    p = m["p"]
    return (m["mode"] == "constant" and m["val"] == 0.0 and min(p) >= 0
            and p[0] == p[1] == p[4] == p[5] == 0)


IDENTITY = [
    rule("mul-one", "Mul(x, c)", "x", both(filled("c", 1), keeps_type("x")),
         ex=[dict(x=(2, 3), c=np.ones((3,), F32))], nex=[dict(x=(2, 3), c=np.full((3,), 2, F32)),
                                                         dict(x=(3,), c=np.ones((2, 3), F32))]),  # x*1 -> x
    rule("mul-one-left", "Mul(c, x)", "x", both(filled("c", 1), keeps_type("x")),
         ex=[dict(x=(2, 3), c=np.ones((), F32))]),  # 1*x -> x
    rule("add-zero", "Add(x, c)", "x", both(filled("c", 0), keeps_type("x")),
         ex=[dict(x=(2, 3), c=np.zeros((1, 3), F32))], nex=[dict(x=(2, 3), c=np.ones((3,), F32))]),  # x+0
    rule("add-zero-left", "Add(c, x)", "x", both(filled("c", 0), keeps_type("x")),
         ex=[dict(x=(2, 3), c=np.zeros((), F32))]),  # 0+x -> x
    rule("sub-zero", "Sub(x, c)", "x", both(filled("c", 0), keeps_type("x")),
         ex=[dict(x=(2, 3), c=np.zeros((3,), F32))]),  # x-0 -> x
    rule("div-one", "Div(x, c)", "x", both(filled("c", 1), keeps_type("x")),
         ex=[dict(x=(2, 3), c=np.ones((), F32))]),  # x/1 -> x
    rule("reshape-noop", "Reshape(x){shape=s}", "x", lambda m: tuple(m["s"]) == m["x"].type.shape,
         ex=[dict(x=(2, 3), s=(2, 3))], nex=[dict(x=(2, 3), s=(3, 2))]),  # reshape to own shape
    rule("transpose-identity", "Transpose(x){perm=p}", "x", lambda m: tuple(m["p"]) == tuple(range(len(m["p"]))),
         ex=[dict(x=(2, 3), p=(0, 1))], nex=[dict(x=(2, 3), p=(1, 0))]),  # identity perm
    rule("pad-zero", "Pad(x){pads=p}", "x", lambda m: not any(m["p"]),
         ex=[dict(x=(2, 3), p=(0, 0, 0, 0))], nex=[dict(x=(2, 3), p=(0, 1, 0, 0))]),  # no padding
    rule("slice-full", "Slice(x){*a}", "x",
         lambda m: m.targets[0].type == m["x"].type and all(s == 1 for s in m["a"]["steps"]),
         ex=[dict(x=(2, 3), a=dict(starts=(0,), ends=(3,), axes=(1,), steps=(1,)))],
         nex=[dict(x=(2, 3), a=dict(starts=(0,), ends=(2,), axes=(1,), steps=(1,)))]),  # covers all
    rule("expand-noop", "Expand(x){shape=s}", "x", lambda m: tuple(m["s"]) == m["x"].type.shape,
         ex=[dict(x=(2, 3), s=(2, 3))], nex=[dict(x=(1, 3), s=(2, 3))]),  # expand to own shape
    rule("tile-ones", "Tile(x){repeats=r}", "x", lambda m: all(r == 1 for r in m["r"]),
         ex=[dict(x=(2, 3), r=(1, 1))], nex=[dict(x=(2, 3), r=(1, 2))]),  # tile by 1
    rule("concat-single", "Concat(x){axis=k}", "x", ex=[dict(x=(2, 3), k=1)]),  # concat of one
    rule("split-single", "Split(x){axis=k, split=s}", "x", lambda m: len(m["s"]) == 1,
         ex=[dict(x=(2, 3), k=0, s=(2,))]),  # split into one part
]


def _not_after_plain_conv(m):
    """`x` is not the output of a conv without activation (or of a batchnorm, which folds into
    one): there the relu fuses into the conv for free (fuse-conv-relu here, and ONNX Runtime
    does it too), so moving it past the pool adds a node."""
    p = m["x"].producer
    return p is None or p.op not in ("Conv", "BatchNormalization") or p.attrs.get("activation", "") != ""


_CONV_RELU_MAXPOOL = """graph t(%x: float32[1,1,4,4], %w: float32[1,1,1,1]) {
  %y = Conv(%x, %w) {}
  %r = Relu(%y)
  %p = MaxPool(%r) {kernel_shape=[2,2], strides=[2,2]}
  return %p
}"""

ELEMENTWISE = [
    rule("relu-relu", "Relu(Relu(x))", "Relu(x)", ex=[dict(x=(2, 3))]),  # relu is idempotent
    rule("abs-abs", "Abs(Abs(x))", "Abs(x)", ex=[dict(x=(2, 3))]),  # abs is idempotent
    rule("relu-abs", "Relu(Abs(x))", "Abs(x)", ex=[dict(x=(2, 3))]),  # abs >= 0
    rule("neg-neg", "Neg(Neg(x))", "x", ex=[dict(x=(2, 3))]),  # --x -> x
    rule("mul-const-const", "Mul(Mul(x, c1), c2)", "Mul(x, c)", const("c1", "c2"),
         lambda m: {"c": like(m["c1"].data * m["c2"].data, m["c1"])},
         ex=[dict(x=(2, 3), c1=Sym(3), c2=Sym(2, 1))]),  # (x*c1)*c2 -> x*(c1*c2)
    rule("add-const-const", "Add(Add(x, c1), c2)", "Add(x, c)", const("c1", "c2"),
         lambda m: {"c": like(m["c1"].data + m["c2"].data, m["c1"])},
         ex=[dict(x=(2, 3), c1=Sym(3), c2=Sym())]),  # (x+c1)+c2 -> x+(c1+c2)
    rule("relu-maxpool", "MaxPool(Relu(x)){*a}", "Relu(MaxPool(x){*a})", _not_after_plain_conv,
         ex=[dict(x=(1, 1, 4, 4), a=dict(kernel_shape=(2, 2), strides=(2, 2))),
             dict(x=(1, 1, 3, 3), a=dict(kernel_shape=(3, 3), pads=(1, 1, 1, 1)))],
         nex=[_CONV_RELU_MAXPOOL]),  # relu is monotone
]

_UNARY = ("Relu", "Sigmoid", "Tanh", "Neg", "Abs", "Exp")
MOVEMENT = [
    rule("transpose-transpose", "Transpose(Transpose(x){perm=p}){perm=q}", "Transpose(x){perm=r}",
         let=lambda m: {"r": tuple(m["p"][i] for i in m["q"])},
         ex=[dict(x=(2, 3, 4), p=(1, 2, 0), q=(2, 0, 1)), dict(x=(2, 3, 4), p=(1, 0, 2), q=(0, 2, 1))]),
    rule("reshape-reshape", "Reshape(Reshape(x){shape=t}){shape=s}", "Reshape(x){shape=s}",
         ex=[dict(x=(2, 6), t=(12,), s=(4, 3))]),  # only the last reshape counts
    *[rule(f"{op.lower()}-transpose", f"{op}(Transpose(x){{perm=p}})", f"Transpose({op}(x)){{perm=p}}",
           ex=[dict(x=(2, 3), p=(1, 0))]) for op in _UNARY],  # elementwise commutes with transpose
    *[rule(f"{op.lower()}-of-transposes", f"{op}(Transpose(x){{perm=p}}, Transpose(y){{perm=p}})",
           f"Transpose({op}(x, y)){{perm=p}}", lambda m: m["x"].type == m["y"].type,
           ex=[dict(x=(2, 3), y=(2, 3), p=(1, 0))], nex=[dict(x=(2, 1), y=(2, 3), p=(1, 0))])
      for op in ("Add", "Mul", "Sub")],  # op(xT, yT) -> op(x, y)T
    rule("relu-reshape", "Relu(Reshape(x){shape=s})", "Reshape(Relu(x)){shape=s}",
         ex=[dict(x=(2, 6), s=(3, 4))]),  # elementwise commutes with reshape
    rule("split-of-concat", "Split(Concat(*xs){axis=k}){axis=k, split=s}", "*xs",
         lambda m: tuple(m["s"]) == tuple(x.type.shape[m["k"]] for x in m["xs"]),
         ex=[dict(xs=[(2, 3), (2, 1)], k=1, s=(3, 1))],
         nex=[dict(xs=[(2, 3), (2, 1)], k=1, s=(2, 2))]),  # split at the concat's seams
    rule("concat-of-split", "Concat(*xs){axis=k}", "x", _is_split_parts, _split_source,
         ex=["""graph t(%x: float32[2,5]) {
  %a, %b = Split(%x) {axis=1, split=[2,3]}
  %y = Concat(%a, %b) {axis=1}
  return %y
}"""], nex=["""graph t(%x: float32[2,5]) {
  %a, %b = Split(%x) {axis=1, split=[2,3]}
  %y = Concat(%b, %a) {axis=1}
  return %y
}"""]),  # concat of all split parts in order -> the input
    rule("concat-concat", "Concat(Concat(*xs){axis=k}, *ys){axis=k}", "Concat(*xs, *ys){axis=k}",
         ex=[dict(xs=[(2, 1), (2, 2)], ys=[(2, 3)], k=1)]),  # flatten nested concats
    rule("relu-concat", "Concat(Relu(x), Relu(y)){axis=k}", "Relu(Concat(x, y){axis=k})",
         ex=[dict(x=(2, 3), y=(2, 1), k=1)]),  # one relu over the concat
]

# a Conv whose output is used twice: fusing the Relu would compute the conv twice
_CONV_TWO_USES = """graph t(%x: float32[1,1,3,3], %w: float32[1,1,1,1]) {
  %y = Conv(%x, %w) {}
  %r = Relu(%y)
  %s = Sigmoid(%y)
  return %r
}"""
# folding an Add into a conv with a fused Relu would move it inside the Relu
_CONV_RELU_ADD = """graph t(%x: float32[1,1,3,3]) {
  %w = const float32[1,1,1,1] [2.0]
  %c = const float32[1,1,1] [-1.0]
  %y = Conv(%x, %w) {activation="Relu"}
  %z = Add(%y, %c)
  return %z
}"""
_BN = "BatchNormalization({conv}, g, b, mu, v){{epsilon=e}}"
_BN_EX = dict(x=(1, 2, 3, 3), w=Sym(2, 2, 2, 2), g=Sym(2), b=Sym(2), mu=Sym(2), v=Sym(2, positive=True),
              e=1e-5, a=dict(pads=(1, 0, 1, 0)))
LINEAR = [
    rule("fold-conv-batchnorm", _BN.format(conv='Conv(x, w){*a, activation=""}'), "Conv(x, w2, b2){*a}",
         const("w", "g", "b", "mu", "v"), _fold_bn, ex=[_BN_EX],
         nex=[dict(_BN_EX, w=(2, 2, 2, 2))]),  # conv + bn -> conv with scaled weights and a bias
    rule("fold-conv-bias-batchnorm", _BN.format(conv='Conv(x, w, cb){*a, activation=""}'), "Conv(x, w2, b2){*a}",
         const("w", "cb", "g", "b", "mu", "v"), _fold_bn, ex=[dict(_BN_EX, cb=Sym(2))]),
    rule("fold-conv-add", 'Add(Conv(x, w){*a, activation=""}, c)', "Conv(x, w, b2){*a}",
         both(const("w"), per_channel("c")), _conv_bias_add,
         ex=[dict(x=(1, 2, 3, 3), w=Sym(3, 2, 1, 1), c=Sym(3, 1, 1)), dict(x=(1, 2, 3, 3), w=Sym(3, 2, 1, 1), c=Sym())],
         nex=[dict(x=(1, 2, 3, 3), w=Sym(3, 2, 1, 1), c=Sym(3, 3)), _CONV_RELU_ADD]),  # conv + c -> bias
    rule("fold-conv-bias-add", 'Add(Conv(x, w, cb){*a, activation=""}, c)', "Conv(x, w, b2){*a}",
         both(const("w", "cb"), per_channel("c")), _conv_bias_add,
         ex=[dict(x=(1, 2, 3, 3), w=Sym(3, 2, 1, 1), cb=Sym(3), c=Sym(1, 3, 1, 1))]),
    rule("fold-conv-mul", 'Mul(Conv(x, w){*a, activation=""}, c)', "Conv(x, w2){*a}", both(const("w"), per_channel("c")),
         _conv_mul, ex=[dict(x=(1, 2, 3, 3), w=Sym(3, 2, 2, 2), c=Sym(3, 1, 1))],
         nex=[dict(x=(1, 2, 3, 3), w=(3, 2, 2, 2), c=Sym(3, 1, 1))]),  # conv * per-channel c
    rule("fold-conv-bias-mul", 'Mul(Conv(x, w, cb){*a, activation=""}, c)', "Conv(x, w2, b2){*a}",
         both(const("w", "cb"), per_channel("c")), _conv_mul,
         ex=[dict(x=(1, 2, 3, 3), w=Sym(3, 2, 1, 1), cb=Sym(3), c=Sym())]),
    rule("fold-matmul-mul", "Mul(MatMul(x, w), c)", "MatMul(x, w2)",
         lambda m: m["w"].is_constant and m["c"].is_constant and m["w"].type.rank == 2
         and m["c"].type.numel in (1, m["w"].type.shape[1]) and m["c"].type.rank <= m.targets[0].type.rank
         and all(d == 1 for d in m["c"].type.shape[:-1]),
         lambda m: {"w2": like(m["w"].data * m["c"].data.reshape(1, -1), m["w"])},
         ex=[dict(x=(2, 3), w=Sym(3, 4), c=Sym(4)), dict(x=(2, 2, 3), w=Sym(3, 4), c=Sym(1, 1))],
         nex=[dict(x=(2, 3), w=Sym(3, 4), c=Sym(2, 1))]),  # (x@w)*c -> x@(w*c)
    rule("matmul-add-to-gemm", "Add(MatMul(x, w), c)", "Gemm(x, w, c)",
         lambda m: m["x"].type.rank == 2 and m["w"].type.rank == 2 and m["c"].is_constant
         and m["c"].type.rank <= 2 and m.targets[0].type.shape == m["x"].type.shape[:1] + m["w"].type.shape[1:],
         ex=[dict(x=(2, 3), w=Sym(3, 4), c=Sym(4))], nex=[dict(x=(2, 3), w=Sym(3, 4), c=(4,))]),  # bias add
    rule("transpose-matmul-to-gemm", "MatMul(Transpose(x){perm=[1,0]}, w)", "Gemm(x, w){transA=1}",
         lambda m: m["w"].type.rank == 2, ex=[dict(x=(3, 2), w=(3, 4))]),  # xT @ w -> Gemm(transA)
    rule("merge-parallel-convs", "Conv(x, w1){*a}, Conv(x, w2){*a}",
         "Split(Conv(x, wc){*a}){axis=1, split=s}", both(const("w1", "w2"), group1), _merge_convs,
         ex=[dict(x=(1, 2, 3, 3), w1=Sym(2, 2, 1, 1), w2=Sym(1, 2, 1, 1), a={})],
         nex=[dict(x=(1, 2, 3, 3), w1=Sym(2, 1, 1, 1), w2=Sym(2, 1, 1, 1), a=dict(group=2))]),
    rule("merge-parallel-biased-convs", "Conv(x, w1, b1){*a}, Conv(x, w2, b2){*a}",
         "Split(Conv(x, wc, bc){*a}){axis=1, split=s}", both(const("w1", "w2", "b1", "b2"), group1),
         _merge_convs, ex=[dict(x=(1, 2, 3, 3), w1=Sym(2, 2, 1, 1), w2=Sym(1, 2, 1, 1), b1=Sym(2), b2=Sym(1),
                                a=dict(pads=(1, 1, 1, 1)))]),
    rule("concat-parallel-convs", "Concat(Conv(x, w1){*a}, Conv(x, w2){*a}){axis=1}", "Conv(x, wc){*a}",
         both(const("w1", "w2"), group1), _concat_consts("w1", "w2"),
         ex=[dict(x=(1, 2, 3, 3), w1=Sym(2, 2, 1, 1), w2=Sym(1, 2, 1, 1), a={})]),  # no split needed
    rule("concat-parallel-biased-convs", "Concat(Conv(x, w1, b1){*a}, Conv(x, w2, b2){*a}){axis=1}",
         "Conv(x, wc, bc){*a}", both(const("w1", "w2", "b1", "b2"), group1), _merge_convs,
         ex=[dict(x=(1, 2, 3, 3), w1=Sym(2, 2, 3, 3), w2=Sym(1, 2, 3, 3), b1=Sym(2), b2=Sym(1),
                  a=dict(pads=(1, 1, 1, 1), activation="Relu"))]),  # SqueezeNet's expand convs, once enlarged
    rule("merge-grouped-convs", "Concat(Conv(x1, w1){*a}, Conv(x2, w2){*a}){axis=1}",
         "Conv(Concat(x1, x2){axis=1}, wc){*a, group=g2}",
         lambda m: m["x1"].type == m["x2"].type and m["w1"].type == m["w2"].type and const("w1", "w2")(m),
         lambda m: dict(_concat_consts("w1", "w2")(m), g2=2 * m["a"]["group"]),
         ex=[dict(x1=(1, 2, 3, 3), x2=(1, 2, 3, 3), w1=Sym(2, 1, 1, 1), w2=Sym(2, 1, 1, 1), a=dict(group=2))],
         nex=[dict(x1=(1, 2, 3, 3), x2=(1, 2, 3, 3), w1=Sym(2, 2, 1, 1), w2=Sym(1, 2, 1, 1), a={})]),
    rule("enlarge-conv-1x1-to-3x3", "Conv(x, w, *bs){*a}, Conv(x, v, *cs){*b}",
         "Conv(x, w3, *bs){*a3}, Conv(x, v, *cs){*b}", _enlarge_ok, _enlarge_to_3x3,
         ex=[dict(x=(1, 2, 3, 3), w=Sym(3, 2, 1, 1), bs=[], v=(1, 2, 3, 3), cs=[], a={}, b=dict(pads=(1, 1, 1, 1))),
             dict(x=(1, 2, 5, 4), w=Sym(2, 2, 1, 1), bs=[Sym(2)], v=Sym(2, 2, 3, 3), cs=[Sym(2)],
                  a=dict(strides=(2, 2), activation="Relu"), b=dict(strides=(2, 2), pads=(1, 1, 1, 1)))],
         nex=[dict(x=(1, 2, 3, 3), w=Sym(3, 2, 1, 1), bs=[], v=(1, 2, 3, 3), cs=[], a={}, b={}),
              dict(x=(1, 2, 3, 3), w=Sym(3, 2, 1, 1), bs=[], v=(1, 2, 3, 3), cs=[], a={},
                   b=dict(strides=(2, 2), pads=(1, 1, 1, 1)))]),  # TASO's enlarge: 1x1 -> 3x3 beside a 3x3
    rule("batch-convs-sharing-weight", "Conv(x1, w, *bs){*a}, Conv(x2, w, *bs){*a}",
         "Split(Conv(Concat(x1, x2){axis=k}, w, *bs){*a}){axis=k, split=s}", _batched_rows(_conv_batch),
         _batched_split(_conv_batch),
         ex=[dict(x1=(1, 2, 3, 3), x2=(2, 2, 3, 3), w=Sym(2, 2, 2, 2), bs=[Sym(2)], a=dict(pads=(1, 0, 1, 0)))],
         nex=[dict(x1=(1, 2, 3, 3), x2=(1, 2, 4, 4), w=Sym(2, 2, 1, 1), bs=[], a={})]),  # one conv, batch 2
    rule("add-of-convs", 'Add(Conv(x, w1){*a, activation=""}, Conv(y, w2){*a})', "Conv(Concat(x, y){axis=1}, wc){*a}",
         lambda m: group1(m) and m["x"].type == m["y"].type and m["w1"].type == m["w2"].type,
         _concat_consts("w1", "w2", axis=1),
         ex=[dict(x=(1, 2, 3, 3), y=(1, 2, 3, 3), w1=Sym(2, 2, 2, 2), w2=Sym(2, 2, 2, 2), a={})]),
    rule("merge-parallel-matmuls", "MatMul(x, w1), MatMul(x, w2)", "Split(MatMul(x, wc)){axis=k, split=s}",
         lambda m: const("w1", "w2")(m) and m["w1"].type.rank == m["w2"].type.rank == 2, _merge_matmuls,
         ex=[dict(x=(2, 3), w1=Sym(3, 2), w2=Sym(3, 1)), dict(x=(2, 2, 3), w1=Sym(3, 2), w2=Sym(3, 2))],
         nex=[dict(x=(2, 3), w1=(3, 2), w2=Sym(3, 1))]),  # Q/K/V: one matmul, then split
    rule("batch-matmuls-sharing-weight", "MatMul(x1, w), MatMul(x2, w)",
         "Split(MatMul(Concat(x1, x2){axis=k}, w)){axis=k, split=s}",
         lambda m: m["w"].type.rank == 2 and _batched_rows(_matmul_rows)(m), _batched_split(_matmul_rows),
         ex=[dict(x1=(2, 3), x2=(1, 3), w=(3, 2)), dict(x1=(2, 2, 3), x2=(2, 1, 3), w=Sym(3, 2))],
         nex=[dict(x1=(2, 3), x2=(2, 3, 3), w=(3, 2))]),  # x1@w, x2@w -> [x1; x2]@w, split rows
    rule("merge-matmul-into-split", "Split(MatMul(x, w1)){axis=k, split=s}, MatMul(x, w2)",
         "Split(MatMul(x, wc)){axis=k, split=s2}",
         lambda m: const("w1", "w2")(m) and m["w2"].type.rank == 2 and m["k"] == m.targets[0].type.rank - 1,
         _merge_into_split, ex=[dict(x=(2, 3), w1=Sym(3, 3), w2=Sym(3, 1), k=1, s=(1, 2))]),  # third head
    rule("merge-parallel-gemms", "Gemm(x, w1, b1){*a}, Gemm(x, w2, b2){*a}",
         "Split(Gemm(x, wc, bc){*a}){axis=1, split=s}", _gemm_merge_ok,
         lambda m: dict(_merge_matmuls(m), bc=like(np.concatenate([m["b1"].data, m["b2"].data]), m["b1"])),
         ex=[dict(x=(2, 3), w1=Sym(3, 2), w2=Sym(3, 1), b1=Sym(2), b2=Sym(1))],
         nex=[dict(x=(2, 3), w1=Sym(2, 3), w2=Sym(1, 3), b1=Sym(2), b2=Sym(1), a=dict(transB=1))]),
    rule("merge-gemm-into-split", "Split(Gemm(x, w1, b1){*a}){axis=1, split=s}, Gemm(x, w2, b2){*a}",
         "Split(Gemm(x, wc, bc){*a}){axis=1, split=s2}", _gemm_merge_ok,
         lambda m: dict(_merge_into_split(m), bc=like(np.concatenate([m["b1"].data, m["b2"].data]), m["b1"])),
         ex=[dict(x=(2, 3), w1=Sym(3, 3), w2=Sym(3, 1), b1=Sym(3), b2=Sym(1), s=(1, 2))]),  # third head
    rule("add-of-matmuls", "Add(MatMul(x, w1), MatMul(y, w2))", "MatMul(Concat(x, y){axis=k}, wc)",
         lambda m: m["x"].type == m["y"].type and m["w1"].type == m["w2"].type and m["w1"].type.rank == 2,
         lambda m: dict(_concat_consts("w1", "w2")(m), k=m["x"].type.rank - 1),
         ex=[dict(x=(2, 3), y=(2, 3), w1=Sym(3, 2), w2=Sym(3, 2))]),  # x@a + y@b -> [x y]@[a; b]
    rule("matmul-reassoc-right", "MatMul(MatMul(a, b), c)", "MatMul(a, MatMul(b, c))",
         lambda m: all(m[n].type.rank == 2 for n in "abc"),
         ex=[dict(a=(2, 3), b=(3, 4), c=(4, 2))]),  # (ab)c -> a(bc); the cost model picks
    rule("matmul-reassoc-left", "MatMul(a, MatMul(b, c))", "MatMul(MatMul(a, b), c)",
         lambda m: all(m[n].type.rank == 2 for n in "abc"),
         ex=[dict(a=(2, 3), b=(3, 4), c=(4, 2))]),  # a(bc) -> (ab)c
    rule("fuse-conv-relu", 'Relu(Conv(*xs){*a, activation=""})', 'Conv(*xs){*a, activation="Relu"}', private,
         ex=[dict(xs=[(1, 2, 4, 4), Sym(3, 2, 3, 3)], a=dict(pads=(1, 1, 1, 1))),
             dict(xs=[(1, 2, 3, 3), (2, 2, 1, 1), Sym(2)], a=dict(strides=(2, 2)))],
         nex=[_CONV_TWO_USES]),  # relu in the conv's epilogue; not when the conv has another user
    *[rule(f"fuse-conv{bias}-residual-{op.lower()}{side}", lhs.format(op=op, conv=conv), f"Conv(x, w, {b}, r){{*a}}",
           both(private, _residual), None if bias else _zero_bias,
           ex=[dict(x=(1, 2, 4, 4), w=Sym(3, 2, 3, 3), r=(1, 3, 4, 4), a=dict(pads=(1, 1, 1, 1)),
                    **({"b": Sym(3)} if bias else {}))],
           nex=[dict(x=(1, 2, 3, 3), w=Sym(3, 2, 1, 1), r=Sym(1, 3, 1, 1), a={}, **({"b": Sym(3)} if bias else {})),
                dict(x=(1, 2, 3, 3), w=Sym(3, 2, 1, 1), r=(2, 3, 3, 3), a={}, **({"b": Sym(3)} if bias else {}))])
      for bias, conv, b in (("-bias", 'Conv(x, w, b){*a, activation=""}', "b"),
                            ("", 'Conv(x, w){*a, activation=""}', "b0"))
      for op in ("Add", "Sum")  # ONNX ResNets use either
      for side, lhs in (("", "{op}({conv}, r)"), ("-left", "{op}(r, {conv})"))],  # relu(conv + b + shortcut)
    rule("fold-pad-into-conv", "Conv(Pad(x){pads=p, mode=mode, value=val}, w){*a}", "Conv(x, w){*a2}",
         _pads_hw_only, _conv_pad,
         ex=[dict(x=(1, 1, 3, 3), w=(2, 1, 2, 2), p=(0, 0, 1, 0, 0, 0, 0, 2), mode="constant", val=0.0, a={})],
         nex=[dict(x=(1, 1, 3, 3), w=(2, 1, 2, 2), p=(0, 0, 1, 1, 0, 0, 1, 1), mode="edge", val=0.0, a={})]),
]

FOLDING = [
    rule("fold-constants", "?op(*xs){*a}", "y",
         lambda m: len(m.nodes[0].outputs) == 1 and all(x.is_constant for x in m["xs"]), _fold,
         ex=[dict(op="Add", xs=[Sym(2), Sym(2)], a={}), dict(op="Transpose", xs=[Sym(2, 3)], a=dict(perm=(1, 0)))],
         nex=[dict(op="Add", xs=[(2,), Sym(2)], a={})]),  # weight-only subgraphs -> constants
]

#: every rule, in the order the greedy driver tries them
RULES: list = IDENTITY + ELEMENTWISE + MOVEMENT + LINEAR + FOLDING


def get_rules(names=None, disable=()) -> list:
    """Rules by name (default all), minus `disable`; NnforgeError for unknown names."""
    from ...errors import NnforgeError

    by_name = {r.name: r for r in RULES}
    unknown = [n for n in list(names or []) + list(disable) if n not in by_name]
    if unknown:
        raise NnforgeError(f"unknown rewrite rule(s) {unknown}; `nnforge rules list` shows them")
    chosen = [by_name[n] for n in names] if names else list(RULES)
    return [r for r in chosen if r.name not in set(disable)]
