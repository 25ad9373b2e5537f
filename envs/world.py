"""The simulator state of one scene, read by name: what predicates and experts look at.

Names are turned into ids once, when the world is made; per-step reads are array lookups.
"""

from __future__ import annotations

import mujoco
import numpy as np

from envs.tasks.spec import SceneSpec

TABLE_TOP = 0.0


class World:
    """Name-based access to the bodies, joints, sites and contacts of a compiled scene."""

    def __init__(self, model: mujoco.MjModel, data: mujoco.MjData, scene: SceneSpec) -> None:
        self.model, self.data, self.scene = model, data, scene
        self.body_ids = {o.name: model.body(o.name).id for o in scene.objects}
        self.site_ids = {model.site(i).name: i for i in range(model.nsite)}
        self.joint_ids = {model.joint(i).name: i for i in range(model.njnt)}
        # every geom of an object (its whole subtree), for contact tests
        self.geom_owner = np.full(model.ngeom, -1)
        for idx, obj in enumerate(scene.objects):
            root = self.body_ids[obj.name]
            for g in range(model.ngeom):
                if self._descends(model.geom_bodyid[g], root):
                    self.geom_owner[g] = idx
        self.index = {o.name: i for i, o in enumerate(scene.objects)}
        self.table_geom = model.geom("table").id

    def _descends(self, body: int, root: int) -> bool:
        while body != 0:
            if body == root:
                return True
            body = self.model.body_parentid[body]
        return False

    def pos(self, name: str) -> np.ndarray:
        return self.data.xpos[self.body_ids[name]]

    def quat(self, name: str) -> np.ndarray:
        return self.data.xquat[self.body_ids[name]]

    def site(self, name: str) -> np.ndarray:
        return self.data.site_xpos[self.site_ids[name]]

    def joint(self, name: str) -> float:
        return float(self.data.qpos[self.model.jnt_qposadr[self.joint_ids[name]]])

    def joint_range(self, name: str) -> np.ndarray:
        return self.model.jnt_range[self.joint_ids[name]]

    def bottom(self, name: str) -> float:
        """Lowest point of a movable object, from its centre and size (upright or tipped)."""
        obj = self.scene.object(name)
        half = obj.size[0] if obj.kind == "cube" else obj.size[1]
        return float(self.pos(name)[2] - half)

    def touching(self, a: str, b: str | None) -> bool:
        """Whether object ``a`` touches object ``b`` (``None``: the table)."""
        ia = self.index[a]
        for c in self.data.contact[: self.data.ncon]:
            g1, g2 = c.geom1, c.geom2
            o1, o2 = self.geom_owner[g1], self.geom_owner[g2]
            if b is None:
                if (o1 == ia and g2 == self.table_geom) or (o2 == ia and g1 == self.table_geom):
                    return True
            elif {int(o1), int(o2)} == {ia, self.index[b]}:
                return True
        return False
