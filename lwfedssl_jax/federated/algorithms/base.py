"""The federated-algorithm contract: what travels, what clients keep.

An algorithm is a bundle of pure functions (fedjax's `client_init /
client_step / client_final` split, optax's pure `(init, update)` pairs),
built once per stage by `make(spec=..., method=..., **kwargs)`. The client
engine (`federated/client.py`) owns the local SSL steps; the round function
(`federated/round.py`) owns gathering/scattering client state and the
parameter aggregation (`federated/aggregate.py`). The algorithm decides:

* `init_server(params)`: server-side extras beside the parameters (FedCA's
  dictionary), `{}` for most algorithms;
* `broadcast(extras)`: the extras sent down each round (counted as traffic);
* `init_client(params)`: ONE client's persistent state at the start of a
  stage (the engine stacks it to `[N, ...]`), `{}`-like when stateless;
* `client_init(sent, state, received)`: where local training starts from
  (online parts, optionally a persistent target branch);
* `client_context(sent, state, public)`: per-round inputs of every local
  step (extra negatives, public data for alignment terms);
* `client_final(result)`: the extras uploaded (beside the exchanged
  parameters, which the engine always uploads) and the client's new state;
* `server_update(extras, uploaded, selected, weights)`: the server's new
  extras from the stacked uploads of the K participants.

Persistent client state lives on the device as one pytree with a leading
`[N]` client axis; the round gathers the K participants' slices by index and
scatters them back inside the jitted round, so partial participation never
changes a compiled shape. Client state and server extras are (re)initialised
at the start of every stage: for stateful algorithms each stage is an
independent FL process (paper §1.10 treats add-ons the same way); e2e runs
have one stage, so nothing is lost there.
"""

from typing import Any, Callable, NamedTuple

import jax

from lwfedssl_jax.ssl.base import Negatives


class Sent(NamedTuple):
    """What the server sends to each participant in a round (download).

    Attributes:
      params: the exchanged parameter parts (stage spec's `exchanged`).
      extras: algorithm extras (FedCA's dictionary), `{}` if none.
    """
    params: dict
    extras: Any


class Upload(NamedTuple):
    """What one client sends back (stacked `[K, ...]` over participants)."""
    params: dict
    extras: Any


class ClientStart(NamedTuple):
    """Where one client's local training starts.

    Attributes:
      online: every trainable part of the stage (received, kept or blended).
      target: the momentum target at the start, or None to rebuild it from
        `online` (paper §1.7: a fresh copy every round).
      notes: what the algorithm decided on receipt and needs again in
        `client_final` (FedEMA's λ and µ), `{}` if nothing.
    """
    online: dict
    target: dict | None
    notes: Any = {}


class PublicData(NamedTuple):
    """The server's public set, downloaded once by every client (FedCA).

    Attributes:
      images: `[P, H, W, 3]` uint8 (P = `data.public_size`; 0 when unused).
      targets: `[P, F]` reference representations of them (the server's
        base model; FedCA's alignment module).
    """
    images: jax.Array
    targets: jax.Array


class StepContext(NamedTuple):
    """Per-round inputs of every local step of one client.

    Attributes:
      negatives: extra negatives for contrastive losses, or None.
      public_images: `[P, H, W, 3]` uint8 server-provided public images, or
        None (alignment terms sample batches from it).
      public_targets: `[P, F]` reference representations of them, or None.
      addon_states: `{add-on name: its state}` of this client (see
        `federated/addons.py`), None without add-ons.
      keep_blocks: `[frozen_blocks]` bool, the frozen blocks this client
        runs this round (depth dropout, `fl.depth_dropout`), None = all.
    """
    negatives: Negatives | None = None
    public_images: jax.Array | None = None
    public_targets: jax.Array | None = None
    addon_states: Any = None
    keep_blocks: jax.Array | None = None


class ClientResult(NamedTuple):
    """Everything `client_final` may read after the local steps.

    Attributes:
      sent: what the client received this round.
      state: its persistent state before the round.
      start: where its local training started.
      online: trained parts after the local steps.
      target: target branch after the local steps (or None).
      represent: `() -> ([N_max, F], [N_max] bool)`: projector-space
        representations of the client's own (un-augmented) examples with
        the trained model, and which rows are real (not padding).
    """
    sent: Sent
    state: Any
    start: ClientStart
    online: dict
    target: dict | None
    represent: Callable


class FederatedAlgorithm(NamedTuple):
    """A federated algorithm as a bundle of pure functions (see module doc).

    Attributes:
      name: registry name.
      init_server: `(params) -> extras`.
      broadcast: `(extras) -> sent extras`.
      init_client: `(params) -> one client's state`.
      client_init: `(sent, state, received) -> ClientStart`; `received`
        holds the stage's trainable parts as the server/frozen prefix has
        them (parts the server never sends are absent).
      client_context: `(sent, state, public) -> StepContext`.
      client_final: `(ClientResult) -> (upload extras, new state)`.
      server_update: `(extras, uploaded extras [K, ...], selected [K],
        weights [K]) -> extras`. `selected` may hold padding ids N (out of
        range, weight 0: a mesh's padding, `round.py`): write per-client
        server state with `.at[selected].set(..., mode='drop')`.
      loss_terms: extra loss terms `term(TermInputs) -> (loss, metrics)`
        summed into the SSL loss of every local step.
      uses_public_data: needs the server's public set (`data.public_size`)
        and its reference representations.
      paper_forwards_per_round: extra single-sample forward passes of the
        present encoder + projector per round in the paper's GFLOPs
        convention (FedCA: 2; §7.1).
      paper_segment_forwards: extra single-sample forwards of the trainable
        segment + projector per local step, same convention (RA: 2).
    """
    name: str
    init_server: Callable
    broadcast: Callable
    init_client: Callable
    client_init: Callable
    client_context: Callable
    client_final: Callable
    server_update: Callable
    loss_terms: tuple = ()
    uses_public_data: bool = False
    paper_forwards_per_round: int = 0
    paper_segment_forwards: int = 0


def target_parts(spec, method) -> tuple[str, ...]:
    """Trainable parts the momentum target copies: encoder parts and the
    heads in `method.target_head_names` (paper §1.7: F_k and H_k, no P)."""
    return tuple(p for p in spec.trainable
                 if p not in method.head_names or p in method.target_head_names)


def encoder_weight_leaves(tree: dict, method) -> list:
    """The >= 2-D leaves of the encoder parts of `tree` (heads excluded):
    what the divergence of FedU / FedEMA is measured on (their ResNet's
    "conv weights"; spec pitfall 2: a ViT has no tensor named conv)."""
    return [x for p, v in sorted(tree.items()) if p not in method.head_names
            for x in jax.tree.leaves(v) if x.ndim >= 2]


def round_drift(result: 'ClientResult', method) -> jax.Array:
    """EasyFL's divergence of a client over its round (FedU, FedEMA):
    (1/|C|) Σ_{l ∈ C} ‖W_l^start − W_l^end‖₂ over the encoder weight tensors
    C of `encoder_weight_leaves` (0 if there are none)."""
    a = encoder_weight_leaves(result.start.online, method)
    b = encoder_weight_leaves(result.online, method)
    if not a:
        return jax.numpy.zeros((), jax.numpy.float32)
    return sum(jax.numpy.linalg.norm((x - y).ravel()) for x, y in zip(a, b)) / len(a)


def local_only_parts(spec) -> tuple[str, ...]:
    """Trainable parts that never travel: a client keeps its own copy."""
    return tuple(p for p in spec.trainable
                 if p not in spec.exchanged and p not in spec.frozen)


def no_extras(*_):
    """`init_server` / `broadcast` / `server_update` of algorithms without
    server extras."""
    return {}


class TermInputs(NamedTuple):
    """What an extra loss term sees in one local step.

    Attributes:
      online: the parameters being differentiated (trainable parts).
      anchor: the exchanged parts as received from the server this round.
      project: `images [B, H, W, 3] float -> [B, F]`: frozen prefix, then
        the online trainable segment and projector (differentiable).
      context: the round's `StepContext`.
      key: a per-step key for the term's own sampling.
      project_view: `(trainable params) -> [B, F]`: the step's first view,
        already through the frozen prefix, through the given trainable
        segment and projector (RA compares models on the same inputs
        without recomputing the shared prefix).
    """
    online: dict
    anchor: dict
    project: Callable
    context: StepContext
    key: jax.Array
    project_view: Callable = None
