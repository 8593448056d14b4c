"""Loss add-ons of paper Table 6, composable with any federated algorithm.

An add-on is one extra term of every local step's loss, with optional
per-client state (paper §1.10: each stage is an independent FL process, so
its state restarts with the stage like the algorithm's):

* `pa`, proximal alignment (FedProx): `mu/2 * ||w - w_global||^2` over the
  trained parts the client received this round (`TermInputs.anchor`, held
  fixed). Parts that never travel (`fl.local_parts`) have no global copy and
  are not pulled.
* `ra`, representation alignment (MOON's model-contrastive loss):
  `mu * -log(e^{cos(z, z_g)/tau} / (e^{cos(z, z_g)/tau} + e^{cos(z, z_prev)/tau}))`
  averaged over the batch, where z, z_g, z_prev are the projector outputs of
  the step's first view by the online model, the global model received this
  round and the client's own model at the end of its previous round in this
  stage (the client state). z_g and z_prev carry no gradient. In a client's
  first round of a stage there is no previous model and the term is 0, as in
  MOON's round 1 (spec pitfall 9). The models share the frozen prefix (it is
  the same in all three), so only the trainable segment and projector run
  twice more per step.

`with_addons(algorithm, addons)` wraps an algorithm: its client state becomes
`{'algorithm': ..., 'addons': {name: ...}}`, the add-on states reach the
terms through `StepContext.addon_states`, and `paper_segment_forwards`
counts the extra forwards in the paper's GFLOPs convention.

Defaults are ours (the paper gives none; spec §4-5): PA mu = 0.01; RA
mu = 1, tau = 0.5 (MOON's).
"""

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from lwfedssl_jax.errors import ConfigError, did_you_mean
from lwfedssl_jax.federated.algorithms.base import FederatedAlgorithm, TermInputs


class AddOn(NamedTuple):
    """One loss add-on.

    Attributes:
      name: registry name.
      init_client: `(params) -> state` of one client at a stage start.
      term: `(TermInputs, state) -> (loss, metrics)`, added to the SSL loss.
      client_final: `(ClientResult, state) -> new state` after the round.
      paper_segment_forwards: extra single-sample forwards of the trainable
        segment + projector per local step (paper GFLOPs convention).
    """
    name: str
    init_client: Callable
    term: Callable
    client_final: Callable
    paper_segment_forwards: int = 0


def _stateless(_):
    return {}


def make_pa(*, spec, mu: float = 0.01) -> AddOn:
    """FedProx's proximal term (see module docstring)."""
    if mu < 0:
        raise ConfigError('addons.pa.mu', mu, 'must be >= 0.')
    pulled = tuple(p for p in spec.trainable if p in spec.exchanged)

    def term(inputs: TermInputs, state):
        del state
        sq = sum(jnp.sum(jnp.square(w - jax.lax.stop_gradient(g)))
                 for p in pulled
                 for w, g in zip(jax.tree.leaves(inputs.online[p]),
                                 jax.tree.leaves(inputs.anchor[p])))
        loss = 0.5 * mu * sq
        return loss, {'pa_loss': loss}

    return AddOn('pa', _stateless, term, lambda result, state: state)


def make_ra(*, spec, mu: float = 1.0, temperature: float = 0.5) -> AddOn:
    """MOON's model-contrastive term (see module docstring)."""
    if mu < 0:
        raise ConfigError('addons.ra.mu', mu, 'must be >= 0.')
    if not temperature > 0:
        raise ConfigError('addons.ra.temperature', temperature, 'must be > 0.')
    trainable = tuple(spec.trainable)

    def init_client(params):
        return {'previous': {p: params[p] for p in trainable},
                'has_previous': jnp.zeros((), jnp.float32)}

    def term(inputs: TermInputs, state):
        # The global model: what was received, and the client's own copy of
        # the parts that never travel.
        global_model = {p: inputs.anchor.get(p, inputs.online[p]) for p in trainable}
        z = _unit(inputs.project_view(inputs.online))
        z_g = _unit(jax.lax.stop_gradient(inputs.project_view(global_model)))
        z_prev = _unit(jax.lax.stop_gradient(inputs.project_view(state['previous'])))
        logits = jnp.stack([jnp.sum(z * z_g, -1), jnp.sum(z * z_prev, -1)], -1) / temperature
        con = jnp.mean(-jax.nn.log_softmax(logits, axis=-1)[:, 0])
        loss = mu * state['has_previous'] * con
        return loss, {'ra_loss': loss}

    def client_final(result, state):
        del state
        return {'previous': {p: result.online[p] for p in trainable},
                'has_previous': jnp.ones((), jnp.float32)}

    return AddOn('ra', init_client, term, client_final, paper_segment_forwards=2)


def _unit(z):
    return z / jnp.maximum(jnp.linalg.norm(z, axis=-1, keepdims=True), 1e-12)


ADDONS: dict[str, Callable[..., AddOn]] = {'pa': make_pa, 'ra': make_ra}


def make_addons(names, spec, kwargs: dict) -> tuple:
    """The add-ons `names` for stage `spec`; `kwargs[name]` their arguments."""
    out = []
    for name in names:
        if name not in ADDONS:
            raise ConfigError('fl.addons', tuple(names), f'{name!r} is unknown; choices: '
                              f'{sorted(ADDONS)}.' + did_you_mean(name, ADDONS))
        out.append(ADDONS[name](spec=spec, **kwargs.get(name, {})))
    return tuple(out)


def with_addons(algorithm: FederatedAlgorithm, addons: tuple) -> FederatedAlgorithm:
    """`algorithm` with the add-ons' terms and per-client states (see module
    docstring); `algorithm` itself when there are none."""
    if not addons:
        return algorithm

    def init_client(params):
        return {'algorithm': algorithm.init_client(params),
                'addons': {a.name: a.init_client(params) for a in addons}}

    def client_init(sent, state, received):
        return algorithm.client_init(sent, state['algorithm'], received)

    def client_context(sent, state, public):
        return algorithm.client_context(sent, state['algorithm'], public)._replace(
            addon_states=state['addons'])

    def client_final(result):
        extras, inner = algorithm.client_final(result._replace(state=result.state['algorithm']))
        return extras, {'algorithm': inner, 'addons': {
            a.name: a.client_final(result, result.state['addons'][a.name]) for a in addons}}

    def bound(addon):
        return lambda inputs: addon.term(inputs, inputs.context.addon_states[addon.name])

    return algorithm._replace(
        init_client=init_client, client_init=client_init, client_context=client_context,
        client_final=client_final,
        loss_terms=algorithm.loss_terms + tuple(bound(a) for a in addons),
        paper_segment_forwards=algorithm.paper_segment_forwards + sum(
            a.paper_segment_forwards for a in addons))
