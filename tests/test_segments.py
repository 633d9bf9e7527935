"""Image-first segments of the eval program (kernels/runtime/plan.c, et_segment; docs/threads.md).

Consecutive conv2d / add / act nodes whose activations are too large for the cache run image by
image: each image goes through the whole segment before the next, on one thread per image. The
choice depends on the shapes only, so:
- the outputs are bit-identical for 1, 2 and 3 threads, and to the same images run one at a
  time (batch 1 has no segment: the batch's kernels then see exactly the per-image shapes);
- they match PyTorch's eval within float32 rounding;
- the tensors read only inside a segment take no room in the arena (memory_info);
- profiling still counts every node once per run.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import edgetrain as et
from edgetrain import nn
from edgetrain.nn import functional as F

from test_mobilenet_vs_torch import conv_bn, make_block

N, HW = 4, 128  # the stem's output [4, 32, 128, 128] is 8.4 MB: above ET_SEGMENT_MIN_BYTES (8 MiB)


def make_net(lib, base, pool, flatten, head=True):
    block = make_block(lib, base)

    class Net(base):
        def __init__(self):
            super().__init__()
            # stem, a residual block at 128x128 (expand to 64 channels: 16.8 MB), a stride-2
            # block whose projection (64x64 planes, 4.2 MB in) is too small to join
            layers = [conv_bn(lib, 3, 32, 3), block(32, 32, 1, 2)]
            if head:
                layers += [block(32, 48, 2, 2), conv_bn(lib, 48, 64, 1)]
            self.features = lib.Sequential(*layers)
            self.head = head
            if head:
                self.classifier = lib.Linear(64, 10)

        def forward(self, x):
            y = self.features(x)
            return self.classifier(flatten(pool(y, 1), 1)) if self.head else y
    return Net


def random_statistics(model, seed, biases=False):
    """BatchNorm statistics (and with `biases` every bias) far from a fresh layer's, so the
    fused epilogue does real work; returns the model."""
    r = np.random.RandomState(seed)
    sd = model.state_dict()
    for k, v in sd.items():
        if k.endswith("running_mean"):
            sd[k] = (r.randn(*v.shape) * 0.2).astype(np.float32)
        elif k.endswith("running_var"):
            sd[k] = r.uniform(0.5, 2.0, v.shape).astype(np.float32)
        elif biases and k.endswith("bias"):
            sd[k] = (r.randn(*v.shape) * 0.1).astype(np.float32)
    model.load_state_dict(sd)
    return model


def _models(head=True, seed=0):
    et.nn.init.manual_seed(seed)
    return random_statistics(make_net(nn, nn.Module, F.adaptive_avg_pool2d, F.flatten, head)(), seed + 1,
                             biases=True)


def _session(model, threads, batch=N):
    sess = et.TrainSession.from_module(model, inputs={"x": (None, 3, HW, HW)}, threads=threads,
                                       max_batch=batch)
    sess.Eval()
    return sess


def _run(sess, x):
    out = sess.RunGraph({"x": x})
    return out[sess.output_names[0]]


def _x(n=N, seed=3):
    return np.random.RandomState(seed).randn(n, 3, HW, HW).astype(np.float32)


def test_bits_for_every_thread_count_and_close_to_torch():
    x = _x()
    outs = {t: _run(_session(_models(), t), x) for t in (1, 2, 3)}
    for t in (2, 3):
        assert np.array_equal(outs[1].view(np.uint32), outs[t].view(np.uint32)), t

    tm = make_net(torch.nn, torch.nn.Module, TF.adaptive_avg_pool2d, torch.flatten)()
    tm.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v))
                        for k, v in _models().state_dict().items()})
    tm.eval()
    with torch.no_grad():
        ref = tm(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(outs[1], ref, rtol=1e-4, atol=1e-4)


def test_segment_output_equals_images_run_one_by_one():
    """The model ends in the segment (its output is the residual add at 128x128), so every node
    of the batch-4 run is image-first; batch 1 runs the same kernels on the same shapes."""
    x = _x()
    one = _session(_models(head=False), 1, batch=1)
    ref = np.concatenate([_run(one, x[i:i + 1]) for i in range(N)])
    for t in (1, 2):
        sess = _session(_models(head=False), t)
        got = _run(sess, x)
        assert got.shape == (N, 32, HW, HW)
        assert np.array_equal(got.view(np.uint32), ref.view(np.uint32)), t
        # a batch-1 run on the same session (another plan, no segment), then batch 4 again
        assert np.array_equal(_run(sess, x[2:3]).view(np.uint32), ref[2:3].view(np.uint32))
        assert np.array_equal(_run(sess, x).view(np.uint32), ref.view(np.uint32))


def test_segments_listed_for_the_current_shapes(tmp_path):
    """The stem and the first block (its add included) at 128x128 form the segment; the second
    block's expand and depthwise (input 16.8 MB) continue it; its projection (4.2 MB in) ends it.
    Batch 1 has none. `edgetrain info` lists it."""
    sess = _session(_models(), 2)
    _run(sess, _x())
    segs = sess.eval_segments()
    assert [(g["layers"], g["count"]) for g in segs] == [
        (("features.0.0", "features.2.conv.1.0"), 7)], segs
    # both blocks' expand + depthwise, 8 channels (8 x 64 KiB planes) a block
    assert segs[0]["pairs"] == [
        {"layers": ("features.1.conv.0.0", "features.1.conv.1.0"), "channels": 8},
        {"layers": ("features.2.conv.0.0", "features.2.conv.1.0"), "channels": 8}], segs
    _run(sess, _x(1))
    assert sess.eval_segments() == []
    from edgetrain.cli import main

    path = tmp_path / "m.etm"
    et.TrainSession.from_module(_models(), inputs={"x": (N, 3, HW, HW)}).SaveToFile(str(path))
    import contextlib
    import io
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["info", str(path)]) == 0
    assert "eval image-first segments (each image through them in turn): features.0.0 .. " \
           "features.2.conv.1.0 (7 nodes, 2 pointwise+depthwise pairs run a channel block at a " \
           "time)" in buf.getvalue(), buf.getvalue()


class _Pair(nn.Module):
    """A stem, then pointwise 8 -> 36 channels at 128x128 (9.4 MB at batch 4) feeding a
    depthwise 3x3: blocks of 8 channels, the last of 4."""

    def __init__(self, stride):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.pw = nn.Conv2d(8, 36, 1)
        self.bn = nn.BatchNorm2d(36)
        self.dw = nn.Conv2d(36, 36, 3, stride=stride, padding=1, groups=36)

    def forward(self, x):
        return self.dw(F.relu6(self.bn(self.pw(F.relu(self.stem(x))))))


@pytest.mark.parametrize("stride", [1, 2])
def test_channel_blocked_pairs_compute_the_bits_of_whole_images(monkeypatch, stride):
    """A pointwise convolution whose output only a depthwise one reads runs with it a block of
    channels at a time: the same bits as the segment without pairs (EDGETRAIN_SEGMENT_PAIRS=0
    at load) at 1, 2 and 3 threads, close to PyTorch, and the slot holds one block of the
    pointwise output instead of a whole image of it."""
    et.nn.init.manual_seed(5)
    model = random_statistics(_Pair(stride), 6, biases=True)
    x = _x(seed=7)

    def session(threads):
        sess = et.TrainSession.from_module(model, inputs={"x": (None, 3, HW, HW)}, threads=threads,
                                           max_batch=N)
        sess.Eval()
        return sess

    monkeypatch.setenv("EDGETRAIN_SEGMENT_PAIRS", "0")
    plain = session(1)
    ref = _run(plain, x)
    assert plain.eval_segments()[0]["pairs"] == []
    plain_ws = plain.memory_info()["workspace_without_reuse"]
    monkeypatch.delenv("EDGETRAIN_SEGMENT_PAIRS")
    for t in (1, 2, 3):
        sess = session(t)
        got = _run(sess, x)
        assert np.array_equal(got.view(np.uint32), ref.view(np.uint32)), t
        assert sess.eval_segments()[0]["pairs"] == [{"layers": ("pw", "dw"), "channels": 8}]
        if t == 1:  # one slot: 8 of the 36 channels of one image of the pointwise output, and
            # the nodes' workspace (under 128 KiB here)
            plane = HW * HW * 4
            assert plain_ws >= 36 * plane
            assert sess.memory_info()["workspace_without_reuse"] <= 8 * plane + (128 << 10)
    tm = make_torch_pair(model, stride)
    with torch.no_grad():
        want = tm(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ref, want, rtol=1e-4, atol=1e-4)


def make_torch_pair(model, stride):
    tm = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 36, 1),
                             torch.nn.BatchNorm2d(36), torch.nn.ReLU6(),
                             torch.nn.Conv2d(36, 36, 3, stride=stride, padding=1, groups=36))
    sd = model.state_dict()
    names = {"0": "stem", "2": "pw", "3": "bn", "5": "dw"}
    tm.load_state_dict({k: torch.from_numpy(np.asarray(sd[names[k.split(".")[0]] + "." + k.split(".", 1)[1]]))
                        for k in tm.state_dict() if not k.endswith("num_batches_tracked")}, strict=False)
    return tm.eval()


def test_internal_tensors_take_no_arena_room():
    sess = _session(_models(), 2)
    _run(sess, _x())
    info = sess.memory_info()
    expand = N * 64 * HW * HW * 4  # the first block's expanded activation, read only inside
    assert info["activations"] < expand, info
    # the segment's slots (2 threads: 2 images' internal tensors) are workspace
    assert info["workspace"] + info["activations"] >= 2 * 64 * HW * HW * 4, info


def test_profile_counts_segment_nodes_once_per_run():
    sess = _session(_models(), 2)
    x = _x()
    sess.profiling = True
    for _ in range(3):
        _run(sess, x)
    prof = sess.profile(by="node")
    convs = {k: v for k, v in prof.items() if " conv2d " in k}
    assert len(convs) == 8, list(prof)
    assert all(v["calls"] == 3 and v["ms"] > 0 for v in prof.values()), prof


def test_training_then_eval_sees_new_weights():
    """A train step changes the weights: the next eval (segments read the eval cache) gives a
    fresh session's bits for the new weights."""
    from edgetrain import optim

    model = _models()
    sess = et.TrainSession.from_module(model, inputs={"x": (N, 3, HW, HW)}, loss=nn.CrossEntropyLoss(),
                                       labels={"label": ((N,), "int64")},
                                       optimizer=optim.SGD(model.parameters(), lr=0.1), threads=2)
    x = _x()
    sess.Eval()
    before = _run(sess, x)
    sess.Train()
    sess.RunGraph({"x": x, "label": np.arange(N, dtype=np.int64)})
    sess.Eval()
    after = _run(sess, x)
    assert not np.array_equal(before, after)
    fresh = et.TrainSession.from_module(model, inputs={"x": (N, 3, HW, HW)}, threads=1)
    fresh.set_parameters(sess.get_parameters())
    fresh.Eval()
    assert np.array_equal(_run(fresh, x).view(np.uint32), after.view(np.uint32))


@pytest.mark.parametrize("batch", [2, 3])
def test_fewer_images_than_threads_and_odd_batches(batch):
    """Batch 2 on 3 threads runs the images one by one with every thread in each kernel; batch
    3 on 2 threads leaves one image for the second round. Same bits as 1 thread."""
    x = _x(batch)
    ref = _run(_session(_models(), 1, batch), x)
    for t in (2, 3):
        assert np.array_equal(_run(_session(_models(), t, batch), x).view(np.uint32), ref.view(np.uint32))


def test_thread_count_change_keeps_bits():
    """The segment's slots are planned for the thread count: changing it re-plans them."""
    x = _x()
    sess = _session(_models(), 1)
    ref = _run(sess, x)
    for t in (3, 2, 1, 2):
        sess.threads = t
        assert np.array_equal(_run(sess, x).view(np.uint32), ref.view(np.uint32)), t
