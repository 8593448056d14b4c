"""Every registered backbone trains in every mode (tiny, synthetic data),
with the stage plan's parts: frozen parts stay bit-identical, a stage's
adapter exists only in its stage. Parametrised over `models.MODELS`, so a
new backbone is covered without editing this file."""

import jax
import numpy as np
import pytest

from configs import common, quickstart
from lwfedssl_jax import models, stages, train


def tiny_config(name, mode):
    c = quickstart.get_config(f'mode={mode},smoke=True')
    entry = models.MODELS[name]
    common.set_model(c, name, **{**entry.defaults, **entry.tiny})
    c.data.synthetic_train, c.data.synthetic_test = 48, 16
    c.fl.total_rounds = models.make_backbone(c.model.to_dict()).depth
    c.eval.probe_epochs = 2
    return c


@pytest.mark.parametrize('name', sorted(models.MODELS))
@pytest.mark.parametrize('mode', stages.MODES)
def test_every_backbone_trains_in_every_mode(name, mode, tmp_path):
    snaps = []
    summary = train.run(tiny_config(name, mode), str(tmp_path),
                        on_stage_end=lambda spec, p: snaps.append(
                            (spec, jax.tree.map(np.asarray, p))))
    assert np.isfinite(summary['final_eval']['knn_top1'])
    enc = models.make_backbone(tiny_config(name, mode).model.to_dict())
    assert sorted(summary['params']) == sorted(snaps[-1][0].present)
    for (prev, p_prev), (spec, p) in zip(snaps, snaps[1:]):
        # The server holds exactly the stage's parts: an earlier adapter is gone.
        assert sorted(p) == sorted(spec.present)
        for part in set(spec.frozen) & set(prev.trainable):
            jax.tree.map(np.testing.assert_array_equal, p_prev[part], p[part])
        for part in enc.adapter_parts(spec.num_blocks):
            assert part in spec.new and part not in prev.present
