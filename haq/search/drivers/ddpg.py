"""HAQ's DDPG agent as a driver (Wang et al., CVPR 2019; mit-han-lab/haq), one episode per
evaluated config.

As in HAQ's latency mode: two steps per layer (weight bits, then activation bits); the
observation of a step is the layer's depthwise flag, in/out channels, stride, kernel, #params,
input H*W, layer index, the previous action and a weight/activation flag, each min-max
normalised over the steps; an action a in [0, 1] becomes bits round((max-min+1) a + min - 0.5)
over the bits the variable's choices offer, and the layer takes its nearest choice. The first
and last layers stay at 8 bits. After the last step a resource wall lowers bits one at a time
from the last layer, alternating activation and weight, until the first cost objective is at
most ``preserve`` x uniform w8a8's. Exploration: truncated normal noise, sigma 0.5 decayed
x0.99 per episode, after ``warmup`` (20) episodes of random actions. Actor and critic 300-300,
lr 1e-4 / 1e-3, tau 0.01, discount 1, replay of 128 episodes' steps, reward 0.1 x (accuracy -
the reference's) less its moving average. Every random draw is seeded by (seed, episode), and
the actions are kept with each trial, so a resumed search replays its episodes exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from haq.config import BitConfig
from haq.search.drivers.base import DriverContext, Proposal, float_option, int_option
from haq.search.drivers.ilp import bits
from haq.search.objectives import COST_OBJECTIVES, cost_value
from haq.search.trials import COMPLETE, TrialRecord

HIDDEN = 300
LR_ACTOR, LR_CRITIC, TAU = 1e-4, 1e-3, 0.01
SIGMA, DECAY = 0.5, 0.99
BATCH = 64
REDRAWS = 20  # episodes drawn per proposal before giving up on finding a new config


class DdpgDriver:
    name = "haq-ddpg"

    def __init__(self, options: dict[str, str]) -> None:
        self.preserve = float_option(options, "preserve", 0.6, 0.0, 10.0)
        self.warmup = int_option(options, "warmup", 20, low=0)

    # Setup --------------------------------------------------------------------------------
    def start(
        self, ctx: DriverContext, history: Sequence[TrialRecord], state: bytes | None
    ) -> None:
        import torch
        from torch import nn

        self.ctx = ctx
        space = ctx.space
        self.vars = space.variables()
        self.cost_dim = next((o for o in ctx.objectives if o in COST_OBJECTIVES), "bops")
        self.acc = next(i for i, o in enumerate(ctx.objectives) if o not in COST_OBJECTIVES)
        specs = {s.name: s for s in space.layers}
        # per variable: the (w, a) bits each choice offers, float left out unless it is all
        self.options = [[bits(o) for o in opts if bits(o) != (32, 32)] or [bits(o) for o in opts]
                        for _, opts in self.vars]  # fmt: skip
        self.fixed = {0, len(self.vars) - 1} if len(self.vars) > 2 else set()
        feats = []
        for i, (var, _) in enumerate(self.vars):
            s = specs[var]
            base = [float(s.kind == "dwconv"), s.in_channels, s.out_channels, s.stride[0],
                    s.kernel[0], s.params, s.in_hw[0] * s.in_hw[1], i]  # fmt: skip
            feats += [base + [0.0, 1.0], base + [0.0, 0.0]]
        f = np.array(feats, dtype=np.float64)
        span = f.max(0) - f.min(0)
        self.features = (f - f.min(0)) / np.where(span > 0, span, 1.0)
        w8 = space.uniform("w8a8")
        ref_cost = self._cost(w8) if w8 is not None else self._cost(self._config([1.0] * len(f)))
        self.limit = self.preserve * ref_cost
        torch.manual_seed(self.ctx.seed)
        d = f.shape[1]
        self.actor = nn.Sequential(nn.Linear(d, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.ReLU(),
                                   nn.Linear(HIDDEN, 1), nn.Sigmoid()).double()  # fmt: skip
        self.critic = nn.Sequential(nn.Linear(d + 1, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN),
                                    nn.ReLU(), nn.Linear(HIDDEN, 1)).double()  # fmt: skip
        self.actor_target = _copy(self.actor)
        self.critic_target = _copy(self.critic)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=LR_ACTOR)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=LR_CRITIC)
        self.replay: list[tuple[np.ndarray, float, float]] = []  # (state, action, reward)
        self.moving = 0.0
        self.episodes = 0
        self.seen: dict[str, TrialRecord | None] = {}
        self.queue = [Proposal(c, "baseline", label) for label, c in space.seeds().items()]
        self.reference_acc: float | None = None
        for rec in history:
            self.tell(rec)

    def _cost(self, config: BitConfig) -> float:
        return cost_value(self.cost_dim, self.ctx.cost_model.score(config)) or 0.0

    # Episodes -----------------------------------------------------------------------------
    def _bits_of(self, i: int, action: float, side: int, w: int | None) -> int:
        avail = sorted({o[side] for o in self.options[i] if side == 0 or o[0] == w}) or sorted(
            {o[side] for o in self.options[i]})  # fmt: skip
        lo, hi = avail[0], avail[-1]
        b = round((hi - lo + 1) * action + lo - 0.5)
        return min(avail, key=lambda x: (abs(x - b), -x))

    def _choice(self, i: int, w: int, a: int) -> str:
        opts = self.vars[i][1]
        return min(opts, key=lambda o: (abs(bits(o)[0] - w) + abs(bits(o)[1] - a), -sum(bits(o))))

    def _config(self, actions: Sequence[float]) -> BitConfig:
        params = {}
        for i, (var, _) in enumerate(self.vars):
            if i in self.fixed:
                params[var] = self._choice(i, 8, 8)
                continue
            w = self._bits_of(i, actions[2 * i], 0, None)
            a = self._bits_of(i, actions[2 * i + 1], 1, w)
            params[var] = self._choice(i, w, a)
        return self._wall(self.ctx.space.config(params))

    def _wall(self, config: BitConfig) -> BitConfig:
        """Lower bits from the last layer, alternating activation and weight, until the
        cost objective fits ``preserve`` x uniform w8a8's (HAQ's resource wall)."""
        from haq.search.sensitivity import with_choice

        side = dict.fromkeys(range(len(self.vars)), 1)  # each layer starts with its activation
        while self._cost(config) > self.limit:
            changed = False
            for i in reversed(range(len(self.vars))):
                if i in self.fixed:
                    continue
                var, opts = self.vars[i]
                cur = bits(str(config[var]))
                for s in (side[i], 1 - side[i]):  # the other side when this one is at its floor
                    lower = [
                        o for o in opts if bits(o)[s] < cur[s] and bits(o)[1 - s] == cur[1 - s]
                    ]
                    if lower:
                        config = with_choice(
                            self.ctx.space, config, var, max(lower, key=lambda o: bits(o)[s])
                        )
                        side[i] = 1 - s
                        changed = True
                        break
                if changed and self._cost(config) <= self.limit:
                    return config
            if not changed:
                return config  # nothing left to lower: the loop's repair or rejection decides
        return config

    def _episode(self, k: int) -> list[float]:
        """The actions of episode ``k``: random during warm-up, else actor + decayed noise."""
        import torch

        rng = np.random.default_rng([self.ctx.seed, k])
        n = len(self.features)
        if k < self.warmup:
            return rng.random(n).tolist()
        sigma = SIGMA * DECAY**k
        actions: list[float] = []
        prev = 0.0
        for t in range(n):
            obs = self.features[t].copy()
            obs[-2] = prev
            with torch.no_grad():
                mu = float(self.actor(torch.from_numpy(obs)[None])[0, 0])
            a = _truncated_normal(rng, mu, sigma)
            actions.append(a)
            prev = a
        return actions

    def ask(self, n: int) -> list[Proposal]:
        out: list[Proposal] = []
        while self.queue and len(out) < n:
            p = self.queue.pop(0)
            if p.config.hash not in self.seen:
                self.seen[p.config.hash] = None
                out.append(p)
        for _ in range(REDRAWS * max(0, n - len(out))):
            if len(out) >= n:
                break
            k = self.episodes
            self.episodes += 1
            actions = self._episode(k)
            config = self._config(actions)
            known = self.seen.get(config.hash, False)
            if known is False:
                self.seen[config.hash] = None
                out.append(
                    Proposal(config, "ddpg", driver_attrs={"episode": k, "actions": actions})
                )
            elif isinstance(known, TrialRecord):
                self._learn(k, actions, known)  # a config met again: learn from its result
        return out

    # Learning -----------------------------------------------------------------------------
    def tell(self, record: TrialRecord) -> None:
        self.seen[record.config.hash] = record
        if record.label == "w8a8" and record.values:
            self.reference_acc = record.values[self.acc]
        k = record.driver_attrs.get("episode")
        if k is not None:
            self.episodes = max(self.episodes, int(k) + 1)
            self._learn(int(k), list(record.driver_attrs["actions"]), record)

    def _learn(self, k: int, actions: list[float], record: TrialRecord) -> None:
        import torch
        import torch.nn.functional as F

        if record.state != COMPLETE or not record.values:
            return
        acc = record.values[self.acc]
        reward = 0.1 * (acc - (self.reference_acc if self.reference_acc is not None else acc))
        self.moving += 0.05 * (reward - self.moving) if self.replay else reward - self.moving
        prev = 0.0
        for t, a in enumerate(actions):
            obs = self.features[t].copy()
            obs[-2] = prev
            self.replay.append((obs, float(a), reward - self.moving))
            prev = a
        self.replay = self.replay[-128 * len(self.features) :]
        if k < self.warmup:
            return
        rng = np.random.default_rng([self.ctx.seed, k, 1])
        for _ in range(len(self.features)):
            idx = rng.integers(0, len(self.replay), size=min(BATCH, len(self.replay)))
            s = torch.from_numpy(np.stack([self.replay[i][0] for i in idx]))
            a = torch.tensor([[self.replay[i][1]] for i in idx], dtype=torch.float64)
            r = torch.tensor([[self.replay[i][2]] for i in idx], dtype=torch.float64)
            q = self.critic(torch.cat([s, a], 1))
            critic_loss = F.mse_loss(q, r)  # discount 1, one reward per episode: the target is r
            self.critic_opt.zero_grad()
            critic_loss.backward()
            self.critic_opt.step()
            actor_loss = -self.critic(torch.cat([s, self.actor(s)], 1)).mean()
            self.actor_opt.zero_grad()
            actor_loss.backward()
            self.actor_opt.step()
            _soft_update(self.actor_target, self.actor)
            _soft_update(self.critic_target, self.critic)

    def state(self) -> bytes | None:
        return None


def _truncated_normal(rng: np.random.Generator, mu: float, sigma: float) -> float:
    for _ in range(100):
        x = rng.normal(mu, sigma)
        if 0.0 <= x <= 1.0:
            return float(x)
    return float(min(max(mu, 0.0), 1.0))


def _copy(net: Any) -> Any:
    import copy

    return copy.deepcopy(net)


def _soft_update(target: Any, source: Any) -> None:
    import torch

    with torch.no_grad():
        for t, s in zip(target.parameters(), source.parameters(), strict=True):
            t.mul_(1 - TAU).add_(s, alpha=TAU)
