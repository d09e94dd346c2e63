"""The label map: 1-based class ids (0 is background, as in google/automl) for the class names a dataset uses."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from effdet.data.read_result import ReadResult


class LabelMap(BaseModel):
    """Class id (1-based) -> name, with the spellings that mean the same class."""

    model_config = ConfigDict(frozen=True)

    names: dict[int, str]
    aliases: dict[str, str] = Field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        """How many classes the model predicts (background not counted), as automl's `num_classes`."""
        return max(self.names, default=0)

    def canonical(self, name: str) -> str:
        """The name as the map spells it: whitespace stripped, an alias replaced by what it stands for."""
        stripped = name.strip()
        return self.aliases.get(stripped, stripped)

    def id_of(self, name: str) -> int:
        """The id of a class name (or an alias of it); KeyError naming the known classes when it has none."""
        canonical = self.canonical(name)
        for class_id, known in self.names.items():
            if known == canonical:
                return class_id
        raise KeyError(f"class {name!r} is not in the label map; known: {sorted(self.names.values())}")


def is_printable(name: str) -> bool:
    """Whether a class name is free of control characters (a NUL cannot even be stored in PostgreSQL JSON)."""
    return not any(ord(char) < 32 or ord(char) == 127 for char in name)


def build_label_map(
    names_in_order: list[str], user_map: dict[int, str] | None = None, aliases: dict[str, str] | None = None
) -> LabelMap:
    """Ids for class names: the user's map when given (it fixes ids), else 1, 2, ... in the order given.

    Names are stripped and aliases merged ({'num_plate': 'number_plate'}), so spellings of one class share an id.
    Raises ValueError for a user map with an id below 1 or a name given twice.
    """
    alias_map = {key.strip(): value.strip() for key, value in (aliases or {}).items()}
    if user_map is not None:
        bad_ids = sorted(class_id for class_id in user_map if class_id < 1)
        if bad_ids:
            raise ValueError(f"label map ids {bad_ids} are below 1; ids start at 1 (0 is the background)")
        names = {class_id: alias_map.get(name.strip(), name.strip()) for class_id, name in sorted(user_map.items())}
        repeated = sorted({name for name in names.values() if list(names.values()).count(name) > 1})
        if repeated:
            raise ValueError(f"label map names {repeated} are given more than one id; give each class one id")
        return LabelMap(names=names, aliases=alias_map)
    unique = [name for name in dict.fromkeys(alias_map.get(n.strip(), n.strip()) for n in names_in_order) if name]
    return LabelMap(names=dict(enumerate(unique, start=1)), aliases=alias_map)


def label_names_of(result: ReadResult) -> list[str]:
    """The names to number: the format's declared order, then any other box labels, sorted (all sorted for VOC)."""
    declared = [name.strip() for name in result.label_names]
    used = {label.strip() for key in result.records.record_keys() for label in key.box_labels}
    return list(dict.fromkeys(declared)) + sorted(used - set(declared))


def check_class_aliases(value: object) -> dict[str, str]:
    """A user's `class_aliases` ({"alias": "name"}: boxes labelled alias count as name), checked; ValueError saying
    what to fix for another shape, an empty name, an alias naming itself or a chain (an alias of an alias)."""
    if not isinstance(value, dict):
        raise ValueError('class_aliases must be a JSON object of alias -> class name, e.g. {"lp": "licence plate"}')
    aliases: dict[str, str] = {}
    for alias, name in value.items():
        if not isinstance(alias, str) or not isinstance(name, str):
            raise ValueError(f"class_aliases maps {alias!r} to {name!r}; give class names as strings")
        key, target = alias.strip(), name.strip()
        if not key or not target or not is_printable(key) or not is_printable(target):
            raise ValueError(f"class_aliases maps {alias!r} to {name!r}; names must be non-empty printable text")
        if key == target:
            raise ValueError(f"class_aliases maps {alias!r} to itself; leave it out")
        if key in aliases:
            raise ValueError(f"class_aliases gives {key!r} twice; map each alias once")
        aliases[key] = target
    chained = sorted(target for target in aliases.values() if target in aliases)
    if chained:
        first = chained[0]
        raise ValueError(
            f"class_aliases chains: {first!r} is an alias and also a target; map every alias straight to the final "
            f"name, e.g. {{..., alias: {aliases[first]!r}}}"
        )
    return aliases


def check_label_map(value: object) -> dict[int, str]:
    """A user's `label_map` ({id: name}, ids from 1), checked; ValueError saying what to fix for another shape,
    an id that is not a positive integer, an empty name or a name given two ids."""
    if not isinstance(value, dict):
        raise ValueError('label_map must be a JSON object of class id -> name, e.g. {"1": "licence plate"}')
    label_map: dict[int, str] = {}
    for key, name in value.items():
        text = str(key).strip()
        if isinstance(key, bool) or not text.lstrip("-").isdigit() or int(text) < 1:
            raise ValueError(f"label_map id {key!r} is not a positive integer; ids start at 1 (0 is the background)")
        if not isinstance(name, str) or not name.strip() or not is_printable(name):
            raise ValueError(f"label_map gives id {text} the name {name!r}; give a non-empty printable name")
        if int(text) in label_map:
            raise ValueError(f"label_map gives id {int(text)} twice; give each id once")
        label_map[int(text)] = name.strip()
    repeated = sorted({name for name in label_map.values() if list(label_map.values()).count(name) > 1})
    if repeated:
        raise ValueError(f"label_map gives {repeated} more than one id; give each class one id")
    if not label_map:
        raise ValueError("label_map is empty; leave it out to number the classes in the order they are found")
    return label_map
