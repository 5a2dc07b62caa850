"""scripts/bench_nms.py at a tiny size: a real run on the shipped checkpoint's RPN proposals prints its table, and the
block-wise NMS keeps exactly the baseline's boxes on every image."""

from __future__ import annotations

import torch
from bench_scripts import load_script

from lighthead_edge.modeling.checkpoint import load_checkpoint


def test_a_small_run_prints_the_table_and_the_two_agree(capsys):
    threads = torch.get_num_threads()
    try:
        assert load_script("bench_nms").main(["--images", "1", "--size", "256", "--runs", "1", "--steps", "1"]) == 0
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert out.startswith("host ISA: ")
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in out.splitlines()
            if line.startswith("| ") and not line.startswith("| what")}  # fmt: skip
    for name in ("RPN NMS, training settings (per image)", "RPN NMS, test settings (per image)"):
        candidates, kept, base, block, ratio, identical = rows[name]
        assert int(kept) > 0 and int(candidates) >= int(kept)
        assert identical == "1/1"  # the kept indices equal the former implementation's
        assert float(base) > 0 and float(block) > 0 and float(ratio) > 0
    assert {"training step (forward + backward), batch 1", "eval forward, batch 1"} <= set(rows)


def test_proposals_are_the_rpns_own_at_each_settings_and_the_swap_is_undone():
    bench = load_script("bench_nms")
    import lighthead_edge.modeling.rpn as rpn

    before = rpn.nms
    model, _, _ = load_checkpoint(bench.DEFAULT_CHECKPOINT)
    images = torch.rand(2, 3, 128, 128) * 255
    c = model.config
    for training, pre, post in ((True, c.rpn_pre_nms_top_n_train, c.rpn_post_nms_top_n_train),
                                (False, c.rpn_pre_nms_top_n_test, c.rpn_post_nms_top_n_test)):  # fmt: skip
        calls = bench.proposals_of(model, images, training)
        assert len(calls) == 2 and all(k == post and 0 < len(b) <= pre for b, _, _, k in calls)
        assert rpn.nms is before
