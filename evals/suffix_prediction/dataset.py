"""Suffix prediction: templated documents of five kinds (recipe, weather report, match report, travel diary,
product listing), each cut at a random word inside its body. The item is the prefix; the options are the
true next ~24 words (≈ 32 tokens) and 9 continuations cut from *other documents of the same kind* (same split),
so style alone does not give the answer. Explained at the last token of the prefix. Chance = 10%.

Every document draws its own entities (names, places, dishes, numbers), so the true continuation usually
shares specifics with the prefix, which is what a good explanation of the last token can carry.
"""

from __future__ import annotations

from nla_audit.evals._items import DatasetFile, check_disjoint, make_item, rng_for

TASK = "suffix_prediction"
VERSION = "1"
N_PER_SPLIT = 30  # documents per kind and split
N_OPTIONS = 10
SUFFIX_WORDS = 24
QUESTION = "Which passage is the true continuation of the text, starting right after the explained token?"

NAMES = ["Amara", "Bruno", "Chiara", "Dmitri", "Elif", "Farid", "Greta", "Hiro", "Ines", "Jonas", "Kavya", "Lars",
         "Marisol", "Nikolai", "Odile", "Pavel", "Quentin", "Rosa", "Soren", "Tamsin", "Umar", "Vera", "Wendell",
         "Xenia", "Yusuf", "Zora"]
TOWNS = ["Porthaven", "Millbrook", "Eastwick", "Caldera Bay", "Norhold", "Fernley", "Saltmarsh", "Kestrel Point",
         "Ashford Vale", "Brightwater", "Dunmore", "Larkspur", "Oakridge", "Redcliff", "Stonebridge", "Thornbury"]
TEAMS = ["Rovers", "Wanderers", "Athletic", "United", "Harriers", "Mariners", "Comets", "Falcons"]
MAINS = ["chicken", "lentil", "mushroom", "salmon", "pumpkin", "chickpea", "beef", "aubergine", "prawn", "tofu"]
FLAVOURS = ["lemon and thyme", "smoked paprika", "coconut and lime", "garlic and rosemary", "ginger and chilli",
            "honey and mustard", "tomato and basil", "cumin and coriander"]
DISHES = ["stew", "curry", "pie", "risotto", "traybake", "soup", "skewers", "gratin"]
GADGETS = ["kettle", "desk lamp", "backpack", "coffee grinder", "bike light", "rain jacket", "thermos", "headphones"]
COLOURS = ["slate grey", "forest green", "burnt orange", "navy blue", "sand beige", "cherry red"]
SIGHTS = ["the old lighthouse", "the covered market", "the cathedral steps", "the botanical garden",
          "the harbour wall", "the clock tower", "the salt caves", "the hilltop fort"]
FOODS = ["grilled sardines", "a bowl of fish soup", "sweet pastries", "spiced flatbread", "goat cheese salad",
         "a plate of dumplings", "fried plantain", "a slice of apple cake"]


def _recipe(r) -> list[str]:
    main, flav, dish = r.choice(MAINS), r.choice(FLAVOURS), r.choice(DISHES)
    n1, n2, mins, temp = r.randint(2, 6), r.randint(1, 4), r.choice([15, 20, 25, 35, 40]), r.choice([160, 180, 200, 220])
    cook = r.choice(NAMES)
    return [f"{cook}'s {flav} {main} {dish} serves {n1 + 1} people and takes under an hour.",
            f"You will need {n1} cups of {main}, {n2} onions, a knob of butter and a generous pinch of salt.",
            f"Start by warming the oven to {temp} degrees and chopping the onions finely.",
            f"Soften the onions in the butter, then stir in the {flav} paste until it smells fragrant.",
            f"Add the {main} and cook for {mins} minutes, stirring every few minutes so nothing sticks.",
            "Transfer everything to a dish and bake until the top is golden and bubbling.",
            f"{cook} likes to serve the {dish} with crusty bread and a spoonful of yoghurt.",
            f"Leftovers keep for {n2 + 1} days in the fridge and taste even better the next day."]


def _weather(r) -> list[str]:
    town, day = r.choice(TOWNS), r.choice(["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"])
    hi, wind, rain = r.randint(8, 31), r.randint(5, 60), r.randint(0, 90)
    sky = r.choice(["clear skies", "patchy cloud", "heavy showers", "thick morning fog", "thunderstorms"])
    return [f"Here is the forecast for {town} on {day}.",
            f"The morning starts with {sky}, and temperatures climb to a high of {hi} degrees by mid afternoon.",
            f"Winds from the {r.choice(['north', 'south', 'east', 'west'])} will gust up to {wind} kilometres per hour along the coast.",
            f"The chance of rain in {town} is {rain} percent, mostly after dark.",
            f"Drivers on the {town} ring road should expect {r.choice(['spray', 'low visibility', 'glare'])} during the evening rush.",
            f"Overnight the temperature falls to {max(hi - r.randint(6, 12), -3)} degrees under {r.choice(['clear', 'cloudy'])} skies.",
            f"Gardeners in {town} may want to cover young plants before going to bed.",
            f"The outlook for the weekend is {r.choice(['drier and brighter', 'wet and windy', 'cold but sunny'])} across the region."]


def _match(r) -> list[str]:
    t1, t2 = r.sample(TOWNS, 2)
    n1, n2 = r.sample(TEAMS, 2)
    s1, s2 = r.randint(0, 4), r.randint(0, 4)
    p1, p2 = r.sample(NAMES, 2)
    m1, m2 = sorted(r.sample(range(3, 89), 2))
    return [f"{t1} {n1} met {t2} {n2} on a {r.choice(['rainy', 'windy', 'sunny', 'cold'])} afternoon in front of {r.randint(2, 30)} thousand fans.",
            f"{p1} opened the scoring for {t1} in the {m1}th minute with a low shot into the corner.",
            f"{t2} answered through {p2}, whose header in the {m2}th minute silenced the home crowd.",
            f"The referee showed {r.randint(1, 6)} yellow cards in a scrappy second half.",
            f"The match ended {s1} to {s2}, leaving {t1} {r.choice(['top', 'third', 'bottom', 'fifth'])} of the table.",
            f"Afterwards {p1} said the team had {r.choice(['deserved more', 'ridden its luck', 'finally clicked'])} and thanked the supporters.",
            f"{t2} {n2} travel to {r.choice(TOWNS)} next week for a cup tie.",
            f"Tickets for the return fixture in {t2} go on sale on {r.choice(['Friday', 'Monday'])} morning."]


def _diary(r) -> list[str]:
    who, town = r.choice(NAMES), r.choice(TOWNS)
    s1, s2 = r.sample(SIGHTS, 2)
    f1 = r.choice(FOODS)
    return [f"Day {r.randint(2, 9)} of {who}'s trip: the {r.choice(['night train', 'ferry', 'coach', 'little plane'])} reached {town} just after dawn.",
            f"{who} left the bags at the guesthouse and walked straight to {s1}.",
            f"A guide explained that {s1} was built {r.randint(2, 9)} hundred years ago by local fishermen.",
            f"Lunch was {f1} at a stall near {s2}, eaten on a bench in the sun.",
            f"In the afternoon it {r.choice(['poured with rain', 'turned hot', 'got windy'])}, so {who} hid in a bookshop for an hour.",
            f"The evening walk along {s2} ended with the best sunset of the whole journey.",
            f"Tomorrow {who} plans to take the early bus from {town} to {r.choice(TOWNS)}.",
            f"Total spent today: {r.randint(20, 90)} euros, most of it on {f1}."]


def _listing(r) -> list[str]:
    g, col = r.choice(GADGETS), r.choice(COLOURS)
    brand = r.choice(["Nordlys", "Kavo", "Tessel", "Brindle", "Ostra", "Pemberly"])
    price, w, yrs = r.randint(19, 149), r.randint(150, 950), r.randint(1, 5)
    return [f"The {brand} {g} in {col} is back in stock for {price} pounds.",
            f"It weighs only {w} grams, so it fits easily in a drawer or a bag.",
            f"Reviewers praise the {g} for its {r.choice(['quiet motor', 'solid hinge', 'soft strap', 'long battery'])} and simple controls.",
            f"The {col} finish is made from {r.choice(['recycled plastic', 'brushed steel', 'waxed cotton', 'bamboo'])} and wipes clean in seconds.",
            f"Every {brand} {g} comes with a {yrs} year warranty and free returns within a month.",
            f"Orders placed before noon ship the same day from our warehouse in {r.choice(TOWNS)}.",
            f"Customers who bought this {g} also looked at the matching {r.choice(GADGETS)}.",
            f"Stock is limited, and the {col} version usually sells out within {r.randint(2, 9)} days."]


KINDS = {"recipe": _recipe, "weather": _weather, "match_report": _match, "travel_diary": _diary, "listing": _listing}


def _cut(r, words: list[str]) -> tuple[str, str]:
    k = r.randint(30, len(words) - SUFFIX_WORDS - 1)
    return " ".join(words[:k]), " ".join(words[k:k + SUFFIX_WORDS])


def build(seed: int = 0, n_per_split: int = N_PER_SPLIT) -> DatasetFile:
    items: list[dict] = []
    for kind, make in KINDS.items():
        r = rng_for(TASK, VERSION, seed, kind)
        seen: set[str] = set()
        for split in ("train", "eval"):
            docs: list = []
            while len(docs) < n_per_split:
                text = " ".join(make(r))
                if text not in seen:
                    seen.add(text)
                    docs.append(_cut(r, text.split()))
            for k, (prefix, suffix) in enumerate(docs):
                others = [d[1] for j, d in enumerate(docs) if j != k and d[1] != suffix]
                options = r.sample(others, N_OPTIONS - 1) + [suffix]
                r.shuffle(options)
                items.append(make_item(f"{kind}-{split}-{k:03d}", kind, split, QUESTION, options,
                                       options.index(suffix), text=prefix, meta={"kind": kind}))
    check_disjoint(items)
    return DatasetFile(TASK, VERSION, seed, items)
