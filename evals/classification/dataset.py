"""Templated classification sets (sentiment, topic, tense, language, a factual property), explained at the
last token. Every text ends where the next word would reveal the label, so the label is something the target
must carry at that token to predict well.

Reproducible: ``build(seed)`` depends only on (task, VERSION, seed). Train and eval items never share a text;
for the factual set they do not even share an entity (animals are split), so the probe has to generalise.
None of the texts come from the default training corpus (Debian fortunes); ``tests/evals`` checks it.
"""

from __future__ import annotations

from nla_audit.evals._items import DatasetFile, check_disjoint, make_item, rng_for

TASK = "classification"
VERSION = "1"
N_PER_SPLIT = 100  # items per group and split in the shipped file

QUESTIONS = {
    "sentiment": "Is the text expressing a positive or a negative opinion?",
    "topic": "What is the topic of the text?",
    "tense": "Is the text describing the past, the present (habits) or the future?",
    "language": "Which language is the text written in?",
    "animal_class": "The text is about an animal. Which class of animal is it?",
}
LABELS = {
    "sentiment": ["positive", "negative"],
    "topic": ["sports", "science", "politics", "cooking", "music"],
    "tense": ["past", "present", "future"],
    "language": ["English", "French", "Spanish", "German", "Italian"],
    "animal_class": ["mammal", "bird", "fish", "reptile", "insect"],
}

# ------------------------------------------------------------------------------------------- sentiment
VENUES = [("the new noodle bar on Harbour Street", "the broth", "the staff"),
          ("the hotel near the station", "the room", "the receptionist"),
          ("the repair shop in our village", "the work on my bike", "the mechanic"),
          ("the open-air theatre", "the second act", "the ushers"),
          ("the bakery that opened in March", "the sourdough", "the owner"),
          ("the ferry to the island", "the crossing", "the crew"),
          ("the yoga studio downtown", "the evening class", "the instructor"),
          ("the museum of clocks", "the main gallery", "the guide"),
          ("the camping site by the lake", "the pitch we got", "the warden"),
          ("the furniture store on the ring road", "the delivery", "the salesman")]
POS_THING = ["was excellent", "was better than I had hoped", "was simply perfect", "was a real delight",
             "exceeded every expectation"]
NEG_THING = ["was a disappointment", "was worse than I had feared", "was simply awful", "was a real letdown",
             "fell short in every way"]
POS_PERSON = ["were warm and helpful", "went out of their way for us", "could not have been kinder",
              "made us feel welcome"]
NEG_PERSON = ["were rude and careless", "ignored us for an hour", "could not have cared less",
              "made us feel unwelcome"]
POS_EXTRA = ["We will definitely go back.", "I have already recommended it to friends.",
             "It was worth every penny.", "The price was fair, too."]
NEG_EXTRA = ["We will never go back.", "I have already warned my friends.", "It was a waste of money.",
             "The price was outrageous, too."]
WHEN = ["Last Saturday", "On Tuesday", "Over the holidays", "Last month", "Yesterday", "A week ago"]
WHO = ["my sister and I", "we", "my colleagues and I", "my parents", "I", "our whole family"]
CLOSERS = ["All in all, the experience was", "Overall, I would say it was", "To sum up, our visit was",
           "In one word, it was"]


def _sentiment(rng, label: str) -> str:
    place, thing, person = rng.choice(VENUES)
    pos = label == "positive"
    return (f"{rng.choice(WHEN)}, {rng.choice(WHO)} tried {place}. {thing.capitalize()} "
            f"{rng.choice(POS_THING if pos else NEG_THING)} and {person} "
            f"{rng.choice(POS_PERSON if pos else NEG_PERSON)}. {rng.choice(POS_EXTRA if pos else NEG_EXTRA)} "
            f"{rng.choice(CLOSERS)}")


# ------------------------------------------------------------------------------------------- topic
TOPIC_SENTENCES = {
    "sports": ["The visiting side scored twice in the last ten minutes", "The striker was substituted at half time",
               "The coach praised the defence after the final whistle", "The relay team broke the national record",
               "Fans queued for hours to buy tickets for the derby", "The goalkeeper saved a late penalty",
               "The marathon was moved to avoid the afternoon heat", "The tennis final went to a fifth set"],
    "science": ["Researchers measured the decay rate of the isotope", "The telescope detected a faint signal from the galaxy",
                "The team sequenced the genome of the rare beetle", "A new catalyst made the reaction twice as fast",
                "The probe sent back images of the icy moon", "The experiment confirmed the predicted particle mass",
                "Microbiologists grew the bacteria at low temperature", "The climate model was run on a supercomputer"],
    "politics": ["The senator proposed an amendment to the budget bill", "Voters in the district will elect a new mayor",
                 "The minister resigned after the coalition talks collapsed", "Parliament debated the election reform",
                 "The opposition leader called for a vote of no confidence", "The treaty was ratified by the assembly",
                 "Campaign posters appeared across the capital", "The governor vetoed the tax proposal"],
    "cooking": ["The dough should rest for an hour before baking", "Fry the onions until they turn golden",
                "Season the soup with salt, pepper and a little lemon", "The chef glazed the carrots with honey",
                "Whisk the eggs and sugar until pale", "Simmer the tomato sauce for twenty minutes",
                "The pastry needs cold butter to stay flaky", "Toast the spices before grinding them"],
    "music": ["The orchestra rehearsed the symphony all week", "The band released its third album on vinyl",
              "The pianist played an encore by Chopin", "The choir sang in four-part harmony",
              "The guitarist tuned down a whole step for the ballad", "The festival line-up includes two jazz trios",
              "The composer wrote the score for a string quartet", "The drummer kept the tempo at ninety beats"],
}
TOPIC_OPENERS = ["Local report:", "From our correspondent:", "Weekend edition:", "Short notice:", "Update:"]
TOPIC_CLOSERS = ["The editor filed this piece under the section on", "This report belongs in the newspaper's pages on",
                 "Readers will find it in the magazine's section about"]


def _topic(rng, label: str) -> str:
    a, b = rng.sample(TOPIC_SENTENCES[label], 2)
    return f"{rng.choice(TOPIC_OPENERS)} {a}. {b}. {rng.choice(TOPIC_CLOSERS)}"


# ------------------------------------------------------------------------------------------- tense
VERBS = [("paint", "painted", "paints", "the fence"), ("clean", "cleaned", "cleans", "the garage"),
         ("wash", "washed", "washes", "the car"), ("fix", "fixed", "fixes", "the old radio"),
         ("visit", "visited", "visits", "the market"), ("bake", "baked", "bakes", "bread"),
         ("write", "wrote", "writes", "letters"), ("drive", "drove", "drives", "to the coast"),
         ("read", "read", "reads", "the newspaper"), ("water", "watered", "waters", "the tomatoes"),
         ("walk", "walked", "walks", "the dog"), ("call", "called", "calls", "her grandmother")]
PEOPLE = [("my neighbour", "she"), ("my uncle", "he"), ("our teacher", "she"), ("the baker", "he"),
          ("my cousin", "she"), ("the old sailor", "he")]
TIMES = {"past": ["Yesterday", "Last Sunday", "Two days ago", "Last winter"],
         "present": ["Every morning", "Most weekends", "Usually", "Every Sunday"],
         "future": ["Tomorrow", "Next Sunday", "In two days", "Next winter"]}
LINKS = ["and after lunch", "and later", "and then", "and in the evening"]


def _tense(rng, label: str) -> str:
    (base, past, pres, obj), (base2, past2, pres2, obj2) = rng.sample(VERBS, 2)
    who, pron = rng.choice(PEOPLE)
    verb = {"past": past, "present": pres, "future": f"will {base}"}[label]
    verb2 = {"past": past2, "present": pres2, "future": f"will {base2}"}[label]
    return f"{rng.choice(TIMES[label])}, {who} {verb} {obj}, {rng.choice(LINKS)} {pron} {verb2} {obj2} and then {pron}"


# ------------------------------------------------------------------------------------------- language
LANG = {
    "English": (["My brother", "The old woman", "Our neighbour", "The little girl", "My friend"],
                ["reads a book", "drinks a coffee", "waits for the bus", "buys fresh bread", "writes a long letter"],
                ["in the garden", "at the station", "every morning", "near the river", "after dinner"]),
    "French": (["Mon frère", "La vieille femme", "Notre voisin", "La petite fille", "Mon ami"],
               ["lit un livre", "boit un café", "attend le bus", "achète du pain frais", "écrit une longue lettre"],
               ["dans le jardin", "à la gare", "chaque matin", "près de la rivière", "après le dîner"]),
    "Spanish": (["Mi hermano", "La anciana", "Nuestro vecino", "La niña", "Mi amigo"],
                ["lee un libro", "bebe un café", "espera el autobús", "compra pan fresco", "escribe una carta larga"],
                ["en el jardín", "en la estación", "cada mañana", "cerca del río", "después de la cena"]),
    "German": (["Mein Bruder", "Die alte Frau", "Unser Nachbar", "Das kleine Mädchen", "Mein Freund"],
               ["liest ein Buch", "trinkt einen Kaffee", "wartet auf den Bus", "kauft frisches Brot",
                "schreibt einen langen Brief"],
               ["im Garten", "am Bahnhof", "jeden Morgen", "in der Nähe des Flusses", "nach dem Abendessen"]),
    "Italian": (["Mio fratello", "La vecchia signora", "Il nostro vicino", "La bambina", "Il mio amico"],
                ["legge un libro", "beve un caffè", "aspetta l'autobus", "compra pane fresco",
                 "scrive una lunga lettera"],
                ["in giardino", "alla stazione", "ogni mattina", "vicino al fiume", "dopo cena"]),
}


def _language(rng, label: str) -> str:
    subj, vp, adv = LANG[label]
    s1 = f"{rng.choice(subj)} {rng.choice(vp)} {rng.choice(adv)}."
    s2 = f"{rng.choice(subj)} {rng.choice(vp)} {rng.choice(adv)}"
    return f"{s1} {s2}"


# ------------------------------------------------------------------------------------------- animals
ANIMALS = {
    "mammal": ["dog", "horse", "whale", "dolphin", "elephant", "tiger", "bear", "rabbit", "giraffe", "bat",
               "kangaroo", "squirrel"],
    "bird": ["eagle", "sparrow", "owl", "penguin", "parrot", "pigeon", "crow", "swan", "ostrich", "flamingo",
             "robin", "pelican"],
    "fish": ["salmon", "trout", "shark", "tuna", "cod", "goldfish", "carp", "herring", "sardine", "catfish",
             "mackerel", "pike"],
    "reptile": ["snake", "lizard", "crocodile", "turtle", "tortoise", "iguana", "gecko", "alligator",
                "chameleon", "cobra", "python", "monitor lizard"],
    "insect": ["ant", "bee", "butterfly", "beetle", "mosquito", "wasp", "grasshopper", "ladybird", "moth",
               "dragonfly", "termite", "cockroach"],
}
ANIMAL_TEMPLATES = ["My niece wrote a school report about the {a}. She explained that the {a} is a",
                    "At the zoo we stopped in front of the {a}. The sign said that the {a} is a",
                    "Quiz night, question five: what kind of animal is the {a}? Answer: the {a} is a",
                    "In the documentary, the narrator reminded us that the {a} is a",
                    "Biology homework: classify the {a}. The {a} is a",
                    "We read a picture book about a brave {a}. Of course, a {a} is a",
                    "The museum label next to the {a} reads: the {a} is a",
                    "Grandpa told us a story about a clever {a}. Scientists say the {a} is a"]


def _animals(rng, label: str, split: str) -> list[str]:
    names = list(ANIMALS[label])
    rng_split = rng_for(TASK, VERSION, 0, "animal-split", label)  # entity split independent of the seed
    rng_split.shuffle(names)
    keep = names[:8] if split == "train" else names[8:]
    return [t.format(a=a) for a in keep for t in ANIMAL_TEMPLATES]


# ------------------------------------------------------------------------------------------- build
MAKERS = {"sentiment": _sentiment, "topic": _topic, "tense": _tense, "language": _language}


def build(seed: int = 0, n_per_split: int = N_PER_SPLIT) -> DatasetFile:
    items: list[dict] = []
    for group, labels in LABELS.items():
        rng = rng_for(TASK, VERSION, seed, group)
        texts: dict[str, set] = {"train": set(), "eval": set()}
        group_items = []
        for split in ("train", "eval"):
            pool = []
            if group == "animal_class":
                for label in labels:
                    pool += [(t, label) for t in _animals(rng, label, split)]
                rng.shuffle(pool)
                pool = _balanced(pool, labels, n_per_split)
            else:
                tries = 0
                while len(pool) < n_per_split and tries < 50 * n_per_split:
                    tries += 1
                    label = labels[len(pool) % len(labels)]
                    text = MAKERS[group](rng, label)
                    if text in texts["train"] or text in texts["eval"]:
                        continue
                    texts[split].add(text)
                    pool.append((text, label))
                rng.shuffle(pool)
            for k, (text, label) in enumerate(pool):
                group_items.append(make_item(f"{group}-{split}-{k:03d}", group, split, QUESTIONS[group], labels,
                                             labels.index(label), text=text, meta={"label": label}))
        items += group_items
    check_disjoint(items)
    return DatasetFile(TASK, VERSION, seed, items)


def _balanced(pool: list, labels: list[str], n: int) -> list:
    per = max(1, n // len(labels))
    out = []
    for label in labels:
        out += [p for p in pool if p[1] == label][:per]
    return out
