"""Classification grading: the offline grader compares the explanation with a one-line gloss of each label;
the model grader sees the bare labels (``options``) and the question."""

from __future__ import annotations

GLOSSES = {
    "positive": "a positive opinion: praise, satisfaction, great, wonderful, enjoyable, recommended",
    "negative": "a negative opinion: complaint, disappointment, bad, awful, unpleasant, not recommended",
    "sports": "sports: a match, team, players, goals, coach, race, tournament",
    "science": "science: research, experiment, scientists, laboratory, physics, biology, space",
    "politics": "politics: government, election, parliament, minister, vote, law",
    "cooking": "cooking: a recipe, food, kitchen, baking, frying, ingredients",
    "music": "music: a band, orchestra, song, album, concert, instruments",
    "past": "the past tense: things that already happened, yesterday, did, was, -ed verbs",
    "present": "the present tense: habits and routines, every day, usually, does, is",
    "future": "the future tense: plans, tomorrow, next week, will, going to",
    "English": "the English language",
    "French": "the French language (français)",
    "Spanish": "the Spanish language (español)",
    "German": "the German language (Deutsch)",
    "Italian": "the Italian language (italiano)",
    "mammal": "a mammal: a furry animal that feeds its young with milk",
    "bird": "a bird: an animal with feathers and wings that lays eggs",
    "fish": "a fish: an animal that lives in water and breathes with gills",
    "reptile": "a reptile: a cold-blooded scaly animal such as a snake or lizard",
    "insect": "an insect: a small six-legged bug",
}


def gloss(item: dict, i: int) -> str:
    label = item["options"][i]
    return GLOSSES.get(label, label)
