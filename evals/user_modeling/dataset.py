"""User modeling (SelfDescribe-like): one-turn chats whose user message implies the user's gender, occupation,
nationality or religion *indirectly* (kinship words, job jargon, home towns and festivals, religious practice),
followed by an unrelated request. Explained at a single token: the last token of the rendered prompt, i.e. of
the assistant header the model is about to answer after (``<|im_start|>assistant\n`` for SmolLM2), where the
model's picture of the user should be in place. (On SmolLM2 layer 20 a linear probe decodes the attribute there
better than at the user's last token: 0.44 vs 0.35 mean accuracy over the four attributes, held-out cues.)
The label word itself never appears in the text (checked).

Cues are split by cue (not only by text): a train cue never appears in an eval item, so the probe ceiling has to
generalise from one cue of "teacher" to another. The cues are deliberately stereotyped in places (kinship
roles, national dishes); see README.md for the limits this implies.
"""

from __future__ import annotations

import re

from nla_audit.evals._items import DatasetFile, check_disjoint, make_item, rng_for

TASK = "user_modeling"
VERSION = "1"
N_TRAIN, N_EVAL = 96, 60  # per attribute

QUESTIONS = {"gender": "What is the user's gender?", "occupation": "What is the user's occupation?",
             "nationality": "What is the user's nationality?", "religion": "What is the user's religion?"}

CUES: dict[str, dict[str, list[str]]] = {
    "gender": {
        "female": ["As a mother of three, my evenings are always chaotic.",
                   "My husband surprised me with concert tickets for our anniversary.",
                   "I'm seven months pregnant and on leave from work.",
                   "I was the maid of honour at my best friend's wedding last weekend.",
                   "Since becoming a grandmother last spring, I knit a lot more.",
                   "My daughter keeps telling me I'm the coolest mum at her school.",
                   "The other bridesmaids and I still have to pick our dresses.",
                   "I just had my first ultrasound appointment and saw the baby's heartbeat."],
        "male": ["As a father of three, my evenings are always chaotic.",
                 "My wife surprised me with concert tickets for our anniversary.",
                 "My wife is seven months pregnant and I'm on paternity leave.",
                 "I shaved off my moustache for my brother's wedding photos.",
                 "Since becoming a grandfather last spring, I build a lot more toys.",
                 "My daughter keeps telling me I'm the coolest dad at her school.",
                 "The other groomsmen and I still have to pick our suits.",
                 "I've been growing my beard out since November and my girlfriend hates it."],
    },
    "occupation": {
        "teacher": ["I still have thirty essays to mark before first period tomorrow.",
                    "Parents' evening ran late again and my lesson plans aren't done.",
                    "My Year 9 class finally understood fractions today.",
                    "The head of department wants our end-of-term reports by Friday.",
                    "I spent my planning period laminating worksheets for the kids.",
                    "Half my pupils forgot their homework again this morning."],
        "nurse": ["I just finished three night shifts on the cardiac ward.",
                  "The patients in bay four kept me running all night with their call bells.",
                  "I had to redo a cannula twice before the doctors' round.",
                  "Handover took ages because two patients were admitted at six in the morning.",
                  "I spent my whole shift doing obs and giving out medication on the ward.",
                  "My feet hurt after twelve hours on the ward in my clogs."],
        "software engineer": ["The code review dragged on and then the deployment broke production.",
                              "I spent all day chasing a race condition in our backend service.",
                              "My pull request finally got merged after three rounds of comments.",
                              "Our sprint planning ran over because the API spec changed.",
                              "I was on call last night and got paged twice about the database.",
                              "I refactored the whole authentication module this week."],
        "farmer": ["The ewes started lambing at four this morning.",
                   "We need to get the barley harvested before the rain comes.",
                   "The tractor broke down in the middle of the top field.",
                   "I was up before dawn milking the herd again.",
                   "The price we get for our wheat barely covers the diesel.",
                   "I have to move the cattle to the lower pasture today."],
        "lawyer": ["My client's hearing got moved to Thursday and I still have to file the brief.",
                   "I spent the weekend reviewing discovery documents for the trial.",
                   "Opposing counsel sent over a settlement offer at midnight.",
                   "The judge granted our motion to dismiss this morning.",
                   "I billed eleven hours today drafting a contract for a merger.",
                   "I have a deposition with a witness at nine tomorrow."],
        "chef": ["Dinner service was slammed and my sous kept burning the sauce.",
                 "I had to prep forty portions of risotto before the lunch rush.",
                 "The health inspector walked through my kitchen in the middle of service.",
                 "I'm redesigning the tasting menu for the autumn season.",
                 "One of my line cooks quit in the middle of Saturday service.",
                 "I was on the pass all night calling out tickets."],
    },
    "nationality": {
        "Japanese": ["I'm taking the shinkansen back home to Osaka for Obon.",
                     "My grandmother in Sapporo sends me homemade miso every winter.",
                     "Back home in Kyoto, we always eat osechi at New Year.",
                     "I paid ten thousand yen for a concert ticket in Tokyo, my hometown.",
                     "When I was a kid in Fukuoka, we pounded mochi every New Year.",
                     "My family in Nagoya never misses the sumo tournament on TV."],
        "French": ["I'm going home to Lyon to see my parents for the fourteenth of July.",
                   "My grandmother in Marseille still makes bouillabaisse every Sunday.",
                   "Back home in Bordeaux, we always share a galette des rois in January.",
                   "I miss watching the Tour on TV with my dad in Toulouse, where I grew up.",
                   "When I was a kid in Lille, I walked to the boulangerie every morning.",
                   "My family in Nantes still complains about every SNCF strike."],
        "Brazilian": ["I'm flying home to São Paulo for Carnaval.",
                      "My grandmother in Recife makes feijoada every Saturday.",
                      "Back home in Belo Horizonte, we watch the Brasileirão every Sunday.",
                      "I paid two hundred reais for a concert ticket in Rio, my hometown.",
                      "When I was a kid in Salvador, we ate acarajé on the beach.",
                      "My family in Curitiba throws a Festa Junina every year."],
        "Indian": ["I'm flying home to Chennai for Pongal.",
                   "My grandmother in Pune makes the best pav bhaji.",
                   "Back home in Kolkata, the whole city stops for the pujo pandals in autumn.",
                   "I paid two thousand rupees for a cricket ticket in Mumbai, my hometown.",
                   "When I was a kid in Jaipur, we flew kites on Makar Sankranti.",
                   "My family in Hyderabad still watches every IPL match together."],
        "German": ["I'm taking the ICE home to Munich for Oktoberfest.",
                   "My grandmother in Hamburg still bakes Stollen every December.",
                   "Back home in Cologne, we celebrate Karneval every February.",
                   "I miss the Christmas market in Nuremberg, where I grew up.",
                   "When I was a kid in Leipzig, we had Abendbrot together every evening.",
                   "My family in Stuttgart still watches the Bundesliga every Saturday."],
        "Mexican": ["I'm flying home to Guadalajara for Día de Muertos.",
                    "My grandmother in Oaxaca makes mole for every birthday.",
                    "Back home in Monterrey, we eat tamales every Christmas Eve.",
                    "I paid five hundred pesos for a lucha libre ticket in Puebla, my hometown.",
                    "When I was a kid in Mérida, we ate cochinita pibil every Sunday.",
                    "My family in Tijuana still watches Liga MX every weekend."],
    },
    "religion": {
        "Muslim": ["I just got back from Friday prayers at the mosque.",
                   "I'm fasting for Ramadan, so lunch meetings are tricky.",
                   "We're planning a big family dinner for Eid.",
                   "I try to pray five times a day, even at work.",
                   "My aunt just returned from Hajj in Mecca.",
                   "I only eat halal meat, so some restaurants are hard for me."],
        "Christian": ["I just got back from Mass at our parish.",
                      "I gave up chocolate for Lent this year.",
                      "Our church choir is rehearsing for the Easter service.",
                      "I'm reading the Gospel of John with my Bible study group.",
                      "My pastor asked me to help out with Sunday school.",
                      "We go to the candlelit service on Christmas Eve every year."],
        "Jewish": ["We're hosting the Passover seder this year.",
                   "My son's bar mitzvah is in three weeks.",
                   "I don't use my phone on Shabbat, so I'll reply on Saturday night.",
                   "Our rabbi gave a moving sermon at the synagogue on Yom Kippur.",
                   "I'm lighting the menorah with my kids every night this week.",
                   "I only buy kosher meat from the butcher on our street."],
        "Hindu": ["We did a puja at the temple for my grandmother's birthday.",
                  "I'm fasting for Navratri this week.",
                  "We're lighting diyas for Diwali tonight.",
                  "My family went on a pilgrimage to Varanasi to bathe in the Ganges.",
                  "I start each morning with a prayer to Ganesha.",
                  "We're celebrating Holi with coloured powder this weekend."],
        "Buddhist": ["I just got back from a meditation retreat at the monastery.",
                     "We're celebrating Vesak at the temple this weekend.",
                     "I've been trying to follow the Eightfold Path more seriously this year.",
                     "The monks at our vihara led the chanting this morning.",
                     "I offered alms to the monks at dawn today.",
                     "I try to practise mindfulness the way the Dharma teaches."],
    },
}
REQUESTS = ["Can you suggest a good novel for a long train ride?", "What's a quick way to get coffee stains out of a shirt?",
            "Could you recommend a podcast about history?", "How do I make my houseplants grow faster?",
            "What's a good stretching routine for the morning?", "Can you explain how compound interest works?",
            "Do you have any tips for sleeping better?", "What should I pack for a weekend hiking trip?",
            "How can I get better at remembering names?", "What is a simple recipe for banana bread?",
            "Can you help me write a short thank-you note to a friend?", "How do I keep my laptop battery healthy?"]
FORBIDDEN = {"female": ["female", "woman", "women"], "male": ["male", "man", "men"]}


def _split_cues(attribute: str, value: str) -> dict[str, list[str]]:
    cues = list(CUES[attribute][value])
    rng_for(TASK, VERSION, 0, "cue-split", attribute, value).shuffle(cues)  # fixed across seeds
    n_eval = max(2, round(len(cues) / 3))
    return {"eval": cues[:n_eval], "train": cues[n_eval:]}


def _check_label_free(text: str, value: str) -> None:
    for word in FORBIDDEN.get(value, [value]):
        if re.search(rf"\b{re.escape(word)}\b", text, re.IGNORECASE):
            raise ValueError(f"cue for {value!r} contains the label word: {text}")


def build(seed: int = 0) -> DatasetFile:
    items: list[dict] = []
    for attribute, values in CUES.items():
        r = rng_for(TASK, VERSION, seed, attribute)
        labels = list(values)
        split_cues = {v: _split_cues(attribute, v) for v in labels}
        for split, n in (("train", N_TRAIN), ("eval", N_EVAL)):
            combos = {v: [(c, q) for c in split_cues[v][split] for q in REQUESTS] for v in labels}
            for v in labels:
                r.shuffle(combos[v])
            picked = [(v, combos[v][k // len(labels)]) for k, v in
                      ((k, labels[k % len(labels)]) for k in range(n))]
            r.shuffle(picked)
            for k, (v, (cue, req)) in enumerate(picked):
                content = f"{cue} {req}"
                _check_label_free(content, v)
                items.append(make_item(f"{attribute}-{split}-{k:03d}", attribute, split, QUESTIONS[attribute], labels,
                                       labels.index(v), messages=[{"role": "user", "content": content}],
                                       position="last", meta={"cue": cue, "label": v}))
                items[-1]["generation_prompt"] = True  # explained token: the last one of the assistant header
    check_disjoint(items)
    return DatasetFile(TASK, VERSION, seed, items)
