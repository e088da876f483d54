"""The network picture in-process: each tile against the neuron's activation computed
independently with torch, links from the weights, many units, refusals, clicks, and the
playground's one redraw path."""

import math

import numpy as np
import pytest
import torch

import exburn_nb as xb
from exburn_nb.widgets import NetworkPicture, Playground
from exburn_nb.widgets.network import (
    LEVELS,
    MAX_WIDTH,
    NEGATIVE,
    POSITIVE,
    WIDTH_STEPS,
    link_style,
)
from exburn_nb.widgets.playground import transform

FEATURES = ["x", "y", "x²", "xy"]


def small_model(hidden=(5, 3), activations=("tanh", "relu"), inputs=4, seed=1):
    spec = xb.input("input", shape=(None, inputs))
    for i, (units, act) in enumerate(zip(hidden, activations, strict=True)):
        spec = spec.dense(units, activation=act, name=f"h{i + 1}")
    return xb.compile(spec.dense(2, name="out"), seed=seed)


def picture(model=None, **kw):
    model = model or small_model()
    return NetworkPicture(model, (-2.0, 1.0), (-1.0, 3.0),
                          transform=lambda p: transform(p, FEATURES), features=FEATURES,
                          resolution=kw.pop("resolution", 12), **kw)


def click(fig, trace: int, x: float, y: float) -> None:
    """What the page sends for a click on trace ``trace`` at (x, y) (figure.js)."""
    fig._handle_custom_msg({"type": "xb-click", "callback": {
        "event_type": "plotly_click", "points": {
            "xs": [x], "ys": [y], "point_indexes": [0], "trace_indexes": [trace]},
        "device_state": None, "selector": None}}, [])


def test_each_tile_is_the_neurons_activation_over_the_plane():
    model = small_model()
    pic = picture(model)
    n = pic.resolution
    # the plane, independently: rows y (low to high), columns x
    gx, gy = torch.linspace(-2.0, 1.0, n), torch.linspace(-1.0, 3.0, n)
    px = gx.repeat(n)
    py = gy.repeat_interleave(n)
    x = torch.stack([px, py, px ** 2, px * py], dim=1)
    w = {k: v.detach() for k, v in model.module.state_dict().items()}
    h1 = torch.tanh(x @ w["h1.weight"].T + w["h1.bias"])
    h2 = torch.relu(h1 @ w["h2.weight"].T + w["h2.bias"])
    out = h2 @ w["out.weight"].T + w["out.bias"]
    expected = [x, h1, h2, out]
    got = pic.outputs()
    assert [tuple(g.shape) for g in got] == [(n * n, 4), (n * n, 5), (n * n, 3), (n * n, 2)]
    for g, e in zip(got, expected, strict=True):
        assert torch.allclose(g, e, atol=1e-5)
    frame = pic.compute()
    for c, e in enumerate(expected):
        scale = e.abs().amax(dim=0)
        tiles = frame.tiles[c]
        assert tiles.shape == (e.shape[1], n, n)
        for unit in range(e.shape[1]):
            # each tile is the neuron's output over the plane (rows y), on its own scale
            want = (e[:, unit] / scale[unit] * LEVELS).reshape(n, n)
            assert np.abs(tiles[unit] - want.numpy()).max() <= 0.5 + 1e-3, (c, unit)
    # what the figure holds: the tiles stacked, the first on top, null rows between
    pic.show(frame)
    z = pic.figure.data[1].z
    gap = round(pic.gap * n)
    assert len(z) == 5 * n + 4 * gap
    top = np.array(z[-n:], dtype=float)
    assert np.array_equal(top, frame.tiles[1][0])  # neuron 0 at the top
    assert np.array_equal(np.array(z[:n], dtype=float), frame.tiles[1][4])
    assert all(v is None for v in z[n])
    # the large view is the selected neuron (the last output by default)
    assert pic.selected == (3, 1)
    assert np.array_equal(np.asarray(pic.figure.data[-1].z, dtype=float), frame.tiles[3][1])


def test_links_coloured_by_sign_and_as_thick_as_their_weight():
    model = small_model()
    pic = picture(model)
    links = pic.links()
    weights = [model.module.h1.weight, model.module.h2.weight, model.module.out.weight]
    assert len(links) == 4 * 5 + 5 * 3 + 3 * 2
    for link in links:
        w = weights[link.layer].detach()
        assert link.weight == pytest.approx(float(w[link.target, link.source]))
        assert link.color == (NEGATIVE if link.weight < 0 else POSITIVE)
        assert link.width == link_style(link.weight, float(w.abs().max()))[1]
    for layer in range(3):
        mine = sorted((abs(k.weight), k.width) for k in links if k.layer == layer)
        assert [wd for _, wd in mine] == sorted(wd for _, wd in mine)  # thicker when larger
        assert mine[-1][1] == MAX_WIDTH and mine[0][1] >= MAX_WIDTH / WIDTH_STEPS
    # the figure's link traces: one segment per link of that colour and width
    pic.update()
    for trace in pic.figure.data[4:-1]:
        count = sum(k.color == trace.line.color and k.width == trace.line.width for k in links)
        xs = np.asarray(trace.x if trace.x is not None else [], dtype=float)
        assert len(xs) == 3 * count and np.isnan(xs[2::3]).all()
    # a changed sign changes the colour
    with torch.no_grad():
        model.module.h1.weight[0, 0] = -abs(float(model.module.h1.weight[0, 0])) - 0.1
    assert next(k for k in pic.links() if k.layer == 0 and k.source == 0 and k.target == 0
                ).color == NEGATIVE


def test_link_style_by_sign_and_size():
    assert link_style(-1e-9, 1.0) == (NEGATIVE, MAX_WIDTH / WIDTH_STEPS)
    assert link_style(0.0, 1.0) == (POSITIVE, MAX_WIDTH / WIDTH_STEPS)
    assert link_style(2.0, 2.0) == (POSITIVE, MAX_WIDTH)
    assert link_style(-0.39, 1.0) == (NEGATIVE, 2 * MAX_WIDTH / WIDTH_STEPS)


def test_three_layers_of_64_units_show_the_first_eight_and_count_the_rest():
    spec = xb.input("input", shape=(None, 2))
    for i in range(3):
        spec = spec.dense(64, activation="relu", name=f"h{i + 1}")
    model = xb.compile(spec.dense(3, name="out"))
    pic = NetworkPicture(model, (-1, 1), (-1, 1), max_shown=8)
    assert pic.units == [2, 64, 64, 64, 3] and pic.shown == [2, 8, 8, 8, 3]
    frame = pic.compute()
    assert [t.shape[0] for t in frame.tiles] == [2, 8, 8, 8, 3]
    assert all(t.shape[1:] == (24, 24) for t in frame.tiles)
    notes = [a.text for a in pic.figure.layout.annotations]
    assert notes.count("+56 more") == 3
    assert len(pic.links()) == 2 * 8 + 8 * 8 + 8 * 8 + 8 * 3
    # the 9th neuron of h1 is not drawn, yet the drawn ones are the real first eight
    outs = pic.outputs()
    assert np.abs(frame.tiles[1][7] - (outs[1][:, 7] / outs[1][:, 7].abs().max()
                                       * LEVELS).reshape(24, 24).numpy()).max() <= 0.5 + 1e-3
    with pytest.raises(ValueError, match="unit"):
        pic.select(1, 8)


def test_refuses_a_conv_model_naming_the_layer():
    spec = (xb.input("image", shape=(None, 1, 8, 8)).conv2d(4, 3, name="conv")
            .flatten(name="flat").dense(2, name="out"))
    with pytest.raises(ValueError, match="'conv'.*'conv2d'"):
        NetworkPicture(xb.compile(spec))
    module_model = xb.compile(torch.nn.Sequential(torch.nn.Linear(2, 2)), input_shape=(None, 2))
    with pytest.raises(ValueError, match="Spec of dense layers"):
        NetworkPicture(module_model)
    with pytest.raises(TypeError, match="model must be"):
        NetworkPicture("net")
    with pytest.raises(ValueError, match="x_range"):
        NetworkPicture(small_model(inputs=2), x_range=(1, -1))
    with pytest.raises(ValueError, match="transform must give"):
        NetworkPicture(small_model(inputs=4), (-1, 1), (-1, 1))


def test_a_click_on_a_neuron_shows_it_large():
    pic = picture()
    frame = pic.compute()
    pic.show(frame)
    x, y = pic.center(1, 3)
    click(pic.figure, 1, x, y + 0.3)  # inside the tile of h1's neuron 3
    assert pic.selected == (1, 3)
    assert np.array_equal(np.asarray(pic.figure.data[-1].z, dtype=float), frame.tiles[1][3])
    assert pic.figure.layout.annotations[-1].text == "<b>h1 #3</b>"
    x, y = pic.center(0, 2)
    click(pic.figure, 0, x, y)
    assert pic.selected == (0, 2) and pic.figure.layout.annotations[-1].text == "<b>x²</b>"
    # between two tiles: nothing changes
    click(pic.figure, 1, x, pic.center(1, 0)[1] - 0.5 - pic.gap / 2)
    assert pic.selected == (0, 2)


def test_update_follows_the_weights():
    model = small_model(inputs=2)
    pic = NetworkPicture(model, (-1, 1), (-1, 1))
    before = [list(map(list, t.z)) for t in pic.figure.data[1:4]]
    with torch.no_grad():
        for p in model.module.parameters():
            p.mul_(-1.5).add_(0.1)
    pic.update()
    after = [list(map(list, t.z)) for t in pic.figure.data[1:4]]
    assert before != after


def test_playground_draws_the_network_from_its_one_redraw_path():
    pg = Playground(n=80, epochs=4, grid=20, hidden=[6, 4], features=["x", "y", "x²"])
    try:
        assert pg.network in pg.pictures.children and pg.pictures in pg.children
        assert pg.network.units == [3, 6, 4, 2] and pg.network.labels[0] == ["x", "y", "x²"]
        # the same plane as the boundary
        assert math.isclose(pg.network.grid_x[0], pg.grid_x[0])
        assert math.isclose(pg.network.grid_y[-1], pg.grid_y[-1], rel_tol=1e-6)
        before = pg.network.figure.data[2].z
        pg.dashboard.start()
        assert pg.dashboard.wait(120)
        assert pg.network.figure.data[2].z != before  # redrawn at the run's end
        n = pg.network.resolution  # what was drawn last is the current weights' picture
        drawn = [list(r) for r in pg.network.figure.data[2].z[-n:]]
        assert pg.network.compute().tiles[2][0].tolist() == drawn
        # Build with another network: the picture follows
        pg.apply({**pg.config, "hidden": [3]})
        assert pg.network.units == [3, 3, 2] and len(pg.network.figure.data) == 3 + 2 * 5 + 1
    finally:
        pg.dashboard.stop()
        pg.dashboard.wait(30)
