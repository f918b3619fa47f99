import pytest
import torch

from alphavil.training import optim


@pytest.mark.parametrize("name,ref", [
    ("sgd", lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.9)),
    ("adam", lambda p, lr: torch.optim.Adam(p, lr=lr)),
    ("adamw", lambda p, lr: torch.optim.AdamW(p, lr=lr, weight_decay=0.01)),
])
def test_matches_torch_optim(name, ref):
    torch.manual_seed(0)
    a = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3))
    b = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3))
    b.load_state_dict(a.state_dict())
    start = a[0].weight.detach().clone()
    ours, theirs = optim.make(name, a.parameters(), 0.01), ref(b.parameters(), 0.01)
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        x = torch.randn(8, 5, generator=g)
        for model, opt in ((a, ours), (b, theirs)):
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            opt.step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-6, atol=1e-7)
    assert (a[0].weight - start).abs().max() > 1e-3  # it moved: the match is not vacuous


def test_unknown_optimizer_is_named():
    with pytest.raises(ValueError, match="lbfgs"):
        optim.make("lbfgs", [], 0.1)


@pytest.mark.parametrize("name,ref", [
    ("sgd", lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.9)),
    ("adam", lambda p, lr: torch.optim.Adam(p, lr=lr)),
    ("adamw", lambda p, lr: torch.optim.AdamW(p, lr=lr, weight_decay=0.01)),
])
def test_fused_matches_torch_optim_also_for_a_parameter_that_starts_late(name, ref):
    """optim.Fused (what a GPU stage uses) against the torch.optim class. The last layer
    gets no gradient in the first two steps, as a task head in joint training does until
    its task's first batch: it must be skipped, then start its state from scratch."""
    torch.manual_seed(0)
    a = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3),
                            torch.nn.Linear(3, 2))
    b = torch.nn.Sequential(*[torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3),
                              torch.nn.Linear(3, 2)])
    b.load_state_dict(a.state_dict())
    before = [p.detach().clone() for p in a.parameters()]
    ours = optim.make(name, a.parameters(), 0.01, fused=True)
    assert isinstance(ours, optim.Fused)
    theirs = ref(b.parameters(), 0.01)
    g = torch.Generator().manual_seed(1)
    for step in range(6):
        x = torch.randn(8, 5, generator=g)
        for model, opt in ((a, ours), (b, theirs)):
            opt.zero_grad()
            (model[:3](x) if step < 2 else model(x)).pow(2).mean().backward()
            opt.step()
    for pa, pb, p0 in zip(a.parameters(), b.parameters(), before):
        torch.testing.assert_close(pa, pb, rtol=1e-6, atol=1e-7)
        assert not torch.equal(pa, p0)


@pytest.mark.parametrize("name,ref", [
    ("sgd", lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.9)),
    ("adam", lambda p, lr: torch.optim.Adam(p, lr=lr)),
    ("adamw", lambda p, lr: torch.optim.AdamW(p, lr=lr, weight_decay=0.01)),
])
def test_cpu_optimizers_count_steps_per_parameter_as_torch_optim(name, ref):
    """The CPU classes against torch.optim on parameters that skip steps, as task heads do
    in round-robin joint training: one has a gradient every step, one every 3rd step, one
    from step 4 on. torch.optim counts each parameter's own steps (Adam's bias correction
    and SGD's momentum buffer follow them); an optimizer-wide count corrects a head
    updated every 3rd step as if it had been updated every step."""
    torch.manual_seed(0)
    ours_params = [torch.randn(4, 3, requires_grad=True) for _ in range(3)]
    theirs_params = [p.detach().clone().requires_grad_() for p in ours_params]
    before = [p.detach().clone() for p in ours_params]
    ours, theirs = optim.make(name, ours_params, 0.01), ref(theirs_params, 0.01)
    g = torch.Generator().manual_seed(1)
    for step in range(1, 21):
        live = [True, step % 3 == 0, step >= 4]
        grads = [torch.randn(4, 3, generator=g) for _ in live]
        for params, opt in ((ours_params, ours), (theirs_params, theirs)):
            opt.zero_grad()
            for p, grad, on in zip(params, grads, live):
                if on:
                    p.grad = grad.clone()
            opt.step()
    for pa, pb, p0 in zip(ours_params, theirs_params, before):
        torch.testing.assert_close(pa, pb, rtol=1e-6, atol=1e-7)
        assert (pa - p0).abs().max() > 1e-3  # every parameter moved: the match is not vacuous
