"""The server's public set (`data.public_size` images held out of the training
split by `builders.load_data`) and its reference representations.

Used by algorithms with `uses_public_data` (FedCA's alignment module): the
server trains a base model on the public set alone, and every client
downloads the public images and the base model's representations once.
"""

import jax
import jax.numpy as jnp
import numpy as np

from lwfedssl_jax import builders, stages
from lwfedssl_jax.federated import algorithms
from lwfedssl_jax.federated import client as client_lib
from lwfedssl_jax.federated.algorithms.base import PublicData, Sent
from lwfedssl_jax.utils import rng


def public_reference(setup: builders.Setup, config, public_images: np.ndarray) -> PublicData:
    """The server's public set and its reference representations.

    When the algorithm uses public data (FedCA's alignment module), the
    server trains a base model of the full encoder on the public set alone
    (the run's SSL method, `data.public_base_epochs` epochs, its own init
    stream) and its projector outputs on the un-augmented public images are
    the references. Deterministic from the seed, so a resumed run recomputes
    the same ones. Otherwise the targets are an empty `[P, 0]` array.
    """
    p = len(public_images)
    if not setup.uses_public_data:
        return PublicData(jnp.asarray(public_images), jnp.zeros((p, 0), jnp.float32))
    fl = config.fl
    spec = stages.make_stage_plan('e2e', backbone=setup.encoder, blocks_per_stage=1,
                                  total_rounds=1, head_names=setup.method.head_names)[0]
    params = builders.init_new_parts(setup, {}, spec, config.seed, tag=rng.PUBLIC_BASE)
    batch = min(fl.batch_size, p)
    tx = client_lib.make_client_optimizer(
        spec, learning_rate=config.optim.base_lr * batch / 256,
        weight_decay=config.optim.weight_decay, b1=config.optim.b1, b2=config.optim.b2)
    local = client_lib.make_local_step(setup.encoder, setup.method, spec, tx,
                                       setup.augment_cfg)
    plain = algorithms.get('fedavg')(spec=spec, method=setup.method, num_clients=1,
                                     max_examples=p, rep_dim=0)
    train = client_lib.make_local_train(
        local, spec, plain, setup.method, batch_size=batch,
        epochs=config.data.public_base_epochs, max_examples=p, total_rounds=1)
    empty = PublicData(jnp.zeros((0,) + public_images.shape[1:], jnp.uint8),
                       jnp.zeros((0, 0), jnp.float32))
    images = jnp.asarray(public_images)

    @jax.jit
    def base_targets(params):
        upload, _, _ = train({}, Sent(params, {}), plain.init_client(params), images,
                             jnp.int32(p), rng.stream(config.seed, rng.PUBLIC_BASE),
                             jnp.int32(0), empty)
        trained = upload.params
        return client_lib.represent_all(local, {}, trained, images, jnp.int32(p),
                                        batch)[0]

    print(f'[lwfedssl] server: training the public base model on {p} images '
          f'({config.data.public_base_epochs} epochs)...', flush=True)
    return PublicData(images, base_targets(params))


def abstract_public(setup: builders.Setup, config) -> PublicData:
    """Shapes of `public_reference(...)` without loading data or training."""
    p, img = config.data.public_size, config.model.image_size
    width = setup.rep_dim if setup.uses_public_data else 0
    return PublicData(jax.ShapeDtypeStruct((p, img, img, 3), jnp.uint8),
                      jax.ShapeDtypeStruct((p, width), jnp.float32))
