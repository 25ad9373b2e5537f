"""Language: the instruction rewritten from templates, more indirect as the level rises.

Level 1 paraphrases the verbs, 2 adds politeness, 3 adds a distracting sentence, 4 names the
objects by description (common-sense phrasing), 5 spells the task out as a reasoning chain. The
rewrite is built from the task's goal predicates and the objects' own descriptions (colour,
position), so what must be done, and to which object, never changes; the scene is untouched.
"""

from __future__ import annotations

import numpy as np

from envs.perturbations.base import Context, Episode, Params
from envs.tasks.predicates import In, Lifted, On, Open, Pressed

NOUNS = {  # plain synonyms (levels 1-3) and descriptions (levels 4-5)
    "cube": (("cube", "block"), ("small block", "little square block")),
    "cylinder": (("cylinder", "peg"), ("round peg", "short round post")),
    "plate": (("plate", "dish"), ("flat round dish", "white dinner dish")),
    "bowl": (("bowl", "tray"), ("square container", "open-topped box")),
    "drawer": (("drawer",), ("drawer of the wooden cabinet", "sliding drawer of the cabinet")),
    "button": (("button", "switch"), ("round push switch", "button on the dark base")),
}
VERBS = {
    On: ("place {o} on {t}", "set {o} down on {t}", "move {o} onto {t}"),
    In: ("place {o} into {t}", "drop {o} into {t}", "move {o} into {t}"),
    Lifted: ("lift {o}", "raise {o} up", "grab {o} and lift it"),
    Open: ("pull {o} open", "slide {o} out", "open up {o}"),
    Pressed: ("press {o}", "push down on {o}", "hit {o}"),
}
CHAINS = {
    On: "first find {o}, then grasp it, then carry it above {t} and let it go there",
    In: "first find {o}, then grasp it, then lower it into {t} and release it",
    Lifted: "first find {o}, then close the gripper around it and raise it well above the table",
    Open: "first find the handle of {o}, then hook it and pull toward yourself until it slides out",
    Pressed: "first move right above {o}, then push it down firmly",
}
JOINERS = (" and then ", " and after that ", ", then ")
POLITE = ("please {x}", "could you {x}?", "I need you to {x}.", "{x}, please.")
DISTRACTIONS = ("The room is quiet today.", "Someone left a cup of coffee in the kitchen.",
                "Do not worry about anything else on the table.", "The weather outside is grey and windy.")
COMMON_SENSE = ("{x}, the way a person would tidy up a table.", "As anyone clearing a desk would, {x}.",
                "{x}; it is a simple everyday chore.")
STEP_WORDS = ("Step one", "Step two", "Step three")


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _phrase(ctx: Context, name: str, level: int, rng: np.random.Generator) -> str:
    obj = ctx.task.scene.object(name)
    plain, described = NOUNS[obj.kind]
    noun = _pick(rng, described if level >= 4 else plain if level >= 2 else plain[:1])
    words = ["the", obj.adjective, noun, obj.where]
    return " ".join(w for w in words if w)


def _goal_text(ctx: Context, goal, level: int, rng: np.random.Generator) -> str:
    names = goal.objects()
    fill = {"o": _phrase(ctx, names[0], level, rng)}
    if len(names) > 1:
        fill["t"] = _phrase(ctx, names[1], level, rng)
    template = CHAINS[type(goal)] if level >= 5 else _pick(rng, VERBS[type(goal)])
    return template.format(**fill)


def rewrite(ctx: Context, level: int, rng: np.random.Generator) -> str:
    """The task's instruction at ``level`` (0 returns it unchanged)."""
    if level == 0:
        return ctx.task.instruction
    parts = [_goal_text(ctx, goal, level, rng) for goal in ctx.task.goals]
    if level >= 5:
        steps = [f"{STEP_WORDS[i]}: {p}." for i, p in enumerate(parts)] if len(parts) > 1 else [f"{_capital(parts[0])}."]
        return "Think step by step. " + " ".join(steps) + " That completes the task."
    text = _pick(rng, JOINERS).join(parts)
    if level >= 4:
        text = _pick(rng, COMMON_SENSE).format(x=text)
    elif level >= 2:
        text = _pick(rng, POLITE).format(x=text)
    if level >= 3:
        text = f"{_pick(rng, DISTRACTIONS)} {text}" if rng.random() < 0.5 else f"{text} {_pick(rng, DISTRACTIONS)}"
    return _capital(text) if level >= 2 else text


def _capital(text: str) -> str:
    return text[0].upper() + text[1:]


class Language:
    name = "language"

    def sample(self, level: int, rng: np.random.Generator, ctx: Context, episode: Episode) -> Params:
        return {"instruction": rewrite(ctx, level, rng)}

    def apply(self, ctx: Context, params: Params, episode: Episode) -> None:
        episode.instruction = params["instruction"]
