"""Each private torch function exburn_nb borrows (exburn_nb/base/torch_internals.py) still
exists and still does what the kit uses it for; a failure names torch's version and the
function, so an upgrade that moves one says so at once."""

import re
from pathlib import Path

import pytest
import torch

from exburn_nb.base import torch_internals as ti


def moved(name: str) -> str:
    return (f"torch {torch.__version__} no longer has {name} as exburn_nb uses it "
            f"({ti.BORROWED[name]}): see exburn_nb/base/torch_internals.py")


def test_private_torch_names_are_used_only_through_this_module():
    """Every private torch name the package uses sits in torch_internals.py and is listed."""
    package = Path(ti.__file__).resolve().parents[1]
    used = {}
    for path in package.rglob("*.py"):
        for name in re.findall(r"\btorch(?:\.\w+)*\._[A-Za-z]\w*|\b_get_fused\w+",
                               path.read_text()):
            used.setdefault(name.rsplit(".", 1)[-1], set()).add(path.name)
    assert used, "the scan found nothing: it is broken"
    outside = {n: files for n, files in used.items() if files != {"torch_internals.py"}}
    assert not outside, f"private torch names used outside torch_internals.py: {outside}"
    listed = {n.rsplit(".", 1)[-1] for n in ti.BORROWED}
    assert set(used) == listed, f"used {sorted(used)}, listed {sorted(listed)}"


def test_fused_kernel_devices():
    name = "torch.optim.optimizer._get_fused_kernels_supported_devices"
    try:
        devices = ti.fused_kernel_devices()
    except (ImportError, AttributeError) as exc:
        pytest.fail(f"{moved(name)}: {exc}")
    assert "cpu" in devices or "cuda" in devices, moved(name)


def test_non_finite_check():
    name = "torch._amp_foreach_non_finite_check_and_unscale_"
    found, one = torch.zeros(1), torch.ones(1)
    try:
        ti.non_finite_check([torch.ones(3)], found, one)
        clean = float(found)
        ti.non_finite_check([torch.tensor([1.0, float("nan")])], found, one)
    except (AttributeError, RuntimeError, TypeError) as exc:
        pytest.fail(f"{moved(name)}: {exc}")
    assert clean == 0.0 and float(found) == 1.0, moved(name)


@pytest.mark.parametrize("adamw", [False, True])
def test_fused_adam_equals_torch_optim(adamw):
    name = "torch._fused_adamw_" if adamw else "torch._fused_adam_"
    torch.manual_seed(0)
    p, g = torch.randn(5), torch.randn(5)
    ref = p.clone().requires_grad_()
    ref.grad = g.clone()
    opt = (torch.optim.AdamW if adamw else torch.optim.Adam)([ref], lr=0.1, weight_decay=0.01)
    opt.step()
    try:
        ti.fused_adam_(adamw, [p], [g], [torch.zeros(5)], [torch.zeros(5)], [],
                       [torch.tensor(1.0)], lr=0.1, beta1=0.9, beta2=0.999,
                       weight_decay=0.01, eps=1e-8, amsgrad=False, maximize=False)
    except (AttributeError, RuntimeError, TypeError) as exc:
        pytest.fail(f"{moved(name)}: {exc}")
    assert torch.allclose(p, ref.detach(), atol=1e-6), moved(name)


def test_fused_sgd_equals_torch_optim():
    name = "torch._fused_sgd_"
    torch.manual_seed(0)
    p, g = torch.randn(5), torch.randn(5)
    ref = p.clone().requires_grad_()
    ref.grad = g.clone()
    torch.optim.SGD([ref], lr=0.1, momentum=0.9, nesterov=True).step()
    try:
        ti.fused_sgd_([p], [g], [torch.zeros(5)], weight_decay=0.0, momentum=0.9, lr=0.1,
                      dampening=0.0, nesterov=True, maximize=False, is_first_step=True)
    except (AttributeError, RuntimeError, TypeError) as exc:
        pytest.fail(f"{moved(name)}: {exc}")
    assert torch.allclose(p, ref.detach(), atol=1e-6), moved(name)


def test_mark_static_address():
    name = "torch._dynamo"
    t = torch.zeros(3)
    try:
        ti.mark_static_address(t)
    except (AttributeError, RuntimeError, TypeError) as exc:
        pytest.fail(f"{moved(name)}: {exc}")
    assert t.tolist() == [0.0, 0.0, 0.0], moved(name)


def test_foreach_add():
    name = "torch._foreach_add_"
    steps = [torch.tensor(1.0), torch.tensor(4.0)]
    try:
        ti.foreach_add_(steps, 1)
    except (AttributeError, RuntimeError, TypeError) as exc:
        pytest.fail(f"{moved(name)}: {exc}")
    assert [float(s) for s in steps] == [2.0, 5.0], moved(name)


def test_foreach_copy():
    name = "torch._foreach_copy_"
    targets, values = [torch.zeros(3), torch.zeros(2, 2)], [torch.arange(3.0), torch.ones(2, 2)]
    try:
        ti.foreach_copy_(targets, values)
    except (AttributeError, RuntimeError, TypeError) as exc:
        pytest.fail(f"{moved(name)}: {exc}")
    assert all(torch.equal(t, v) for t, v in zip(targets, values, strict=True)), moved(name)


def test_inductor_compile():
    name = "torch._inductor"
    from torch.fx.experimental.proxy_tensor import make_fx

    def f(a, b):
        return (torch.relu(a @ b) + 1,)

    a, b = torch.randn(3, 4), torch.randn(4, 2)
    try:
        compiled = ti.inductor_compile(make_fx(f)(a, b), [a, b], fallback_random=True)
        out = compiled(a, b)
    except (AttributeError, ImportError, RuntimeError, TypeError) as exc:
        pytest.fail(f"{moved(name)}: {exc}")
    torch.testing.assert_close(out[0], f(a, b)[0], msg=moved(name))


def test_inductor_compile_calls_the_graph_directly_where_aot_autograd_adds_nothing():
    """A step that writes its inputs in place runs without aot_autograd's wrapper, and
    still does what the wrapper does: versions bumped, gradients off while it runs; an
    input passed twice (aot_autograd dedupes it at run time) keeps the wrapper."""
    name = "torch._inductor"
    from torch.fx.experimental.proxy_tensor import make_fx

    def step(x, w, m):
        loss = (x @ w).square().mean()
        m.mul_(0.9).add_(x.sum(0, keepdim=True).T)  # in place: aot_autograd makes it a copy_
        w.copy_(w - 0.1 * m)
        return (loss,)

    x, w, m = torch.randn(4, 3), torch.randn(3, 1), torch.zeros(3, 1)
    want_w, want_m = w.clone(), m.clone()
    want_loss = step(x, want_w, want_m)[0]
    try:
        compiled = ti.inductor_compile(make_fx(step, tracing_mode="fake")(x, w, m), [x, w, m],
                                       fallback_random=True, cpp_wrapper=True)
    except (AttributeError, ImportError, RuntimeError, TypeError) as exc:
        pytest.fail(f"{moved(name)}: {exc}")
    assert compiled.direct, moved(name)
    versions = (x._version, w._version, m._version)
    seen = []
    with torch.enable_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        loss = compiled(x, w, m)[0]  # autocast does not reach inductor's kernels
        seen.append(torch.is_grad_enabled())
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, want_loss)
    torch.testing.assert_close(w, want_w)
    torch.testing.assert_close(m, want_m)
    assert (x._version, w._version - versions[1], m._version - versions[2]) == (
        versions[0], 1, 1), "the inputs written in place have their versions bumped, once"
    assert seen == [True], "the caller's gradient mode is back after the call"

    def twice(a, b):
        b.copy_(b + a)
        return (a.sum(),)

    same = torch.ones(2)
    wrapped = ti.inductor_compile(make_fx(twice)(same, same), [same, same])
    assert not wrapped.direct

    def view_of_input(a):
        return (a.t(),)

    assert not ti.inductor_compile(make_fx(view_of_input)(b := torch.ones(2, 3)), [b]).direct
