"""Under torch.compile the keep-ratio warm-up costs one graph, or one per step of it."""

import torch
from torch._dynamo.backends.registry import lookup_backend
from torch._dynamo.testing import CompileCounter

import trilevel
from trilevel.models import create
from trilevel.schedule import KeepRatioSchedule


def graphs_over_warmup(levels: int, symbolic_counts: bool = True, steps: int = 24) -> int:
    torch.manual_seed(0)
    model = create(
        "vit_tiny_patch16_224", dict(img_size=16, patch_size=4, embed_dim=32, depth=4, num_heads=2)
    )
    trilevel.patch(model, token_keep=1.0, attn_keep=1.0, locations=(1, 2), stat_layer=3)
    model.trilevel.attention_level = True  # the trainer's setting when the R_A target is < 1
    model.trilevel.symbolic_counts = symbolic_counts
    token = KeepRatioSchedule(0.5, start_epoch=0.25, end_epoch=0.75, levels=levels)
    attn = KeepRatioSchedule(0.5, start_epoch=0.25, end_epoch=0.75, levels=levels)
    counter = CompileCounter()  # counts the graphs dynamo hands to the backend
    net = torch.compile(model, backend=counter, dynamic=False)
    x = torch.randn(2, 3, 16, 16)
    torch._dynamo.reset()
    for i in range(steps):
        model.trilevel.token_keep, model.trilevel.attn_keep = token(i / steps), attn(i / steps)
        net(x).sum().backward()
    return counter.frame_count


def test_symbolic_counts_compile_one_graph_for_the_whole_warmup():
    assert graphs_over_warmup(levels=0) == 1  # even the exact cosine: the counts are symbolic


def test_static_counts_compile_one_graph_per_staircase_step():
    assert graphs_over_warmup(levels=2, symbolic_counts=False) == 3  # R = 1.0, the middle step, the target


def test_selectors_trace_into_one_graph_that_matches_eager():
    """The ranking is a custom op: dynamo keeps the whole forward in one graph (no Triton
    sort for inductor to generate) and the compiled forward and backward match eager."""
    torch.manual_seed(0)
    model = create(
        "vit_tiny_patch16_224", dict(img_size=16, patch_size=4, embed_dim=32, depth=4, num_heads=2)
    )
    trilevel.patch(model, token_keep=0.7, attn_keep=0.3, locations=(1, 2), stat_layer=1)
    x = torch.randn(3, 3, 16, 16)
    torch._dynamo.reset()  # earlier tests may have exhausted the frame's recompile limit
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return lookup_backend("aot_eager")(gm, example_inputs)

    net = torch.compile(model, backend=backend, fullgraph=True, dynamic=False)
    compiled = net(x)
    ranked = [n for n in graphs[0].graph.nodes if "ranked_indices" in str(n.target)]
    assert len(graphs) == 1 and len(ranked) == 4  # tokens and connections at 2 selectors
    compiled.square().sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    eager = model(x)
    eager.square().sum().backward()
    torch.testing.assert_close(compiled, eager)
    for g, p in zip(grads, model.parameters()):
        torch.testing.assert_close(g, p.grad)
