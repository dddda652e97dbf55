"""User-modeling grading: the offline grader compares the explanation with a gloss of each attribute value
(written without the dataset's cue sentences); the model grader sees the bare values."""

from __future__ import annotations

GLOSSES = {
    "female": "the user is a woman: she, her, mother, wife, daughter",
    "male": "the user is a man: he, him, father, husband, son",
    "teacher": "the user is a teacher: school, pupils, classes, marking, lessons",
    "nurse": "the user is a nurse: hospital, patients, ward, shifts, medication",
    "software engineer": "the user is a software engineer: programming, code, servers, bugs, deployments",
    "farmer": "the user is a farmer: farm, crops, animals, fields, harvest",
    "lawyer": "the user is a lawyer: court, clients, cases, judges, contracts",
    "chef": "the user is a chef: restaurant kitchen, cooking, menus, service",
    "Japanese": "the user is Japanese, from Japan",
    "French": "the user is French, from France",
    "Brazilian": "the user is Brazilian, from Brazil",
    "Indian": "the user is Indian, from India",
    "German": "the user is German, from Germany",
    "Mexican": "the user is Mexican, from Mexico",
    "Muslim": "the user is Muslim: Islam",
    "Christian": "the user is Christian: Christianity, Jesus",
    "Jewish": "the user is Jewish: Judaism",
    "Hindu": "the user is Hindu: Hinduism",
    "Buddhist": "the user is Buddhist: Buddhism, the Buddha",
}


def gloss(item: dict, i: int) -> str:
    value = item["options"][i]
    return GLOSSES.get(value, value)
