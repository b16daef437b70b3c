"""Plain words for the symbols: the glossary, table headers in words, and the guided tour's steps.

Kept in one place so a page, the glossary and an exported table all say the same thing about a symbol.
"""

from __future__ import annotations

from vlod_core.toy.world import COLOURS, SHAPES

GLOSSARY = {
    "ℓStd": "The standard distillation loss, KL(pI‖qI): how far the student's guess for the next token, "
    "with the image, is from the teacher's. 0 means they agree exactly.",
    "ℓLang": "The language mismatch, KL(px‖qx): the same comparison with the image removed on both sides. "
    "It measures how differently the two guess from the question alone (their language priors).",
    "ℓVis": "The visual mismatch, KL(pI‖q*): q* is the student's own question-only guess, shifted by what the "
    "image adds for the teacher. It is large when the student does not use the image the way the teacher does.",
    "VDS": "Visual dependency score, KL(qI‖qx): how much the image changes the teacher's guess at this token. "
    "0 means the teacher would say the same without the image.",
    "log-ratio": "log pI(y) − log qI(y) on the token y the answer actually has. Above 0 the student gives y more "
    "probability than the teacher; below 0, less. It splits exactly into a language part and a visual part.",
    "PMI": "Pointwise mutual information between the image and a token: log p(y | image, question) − "
    "log p(y | question), how much seeing the image raises (above 0) or lowers the token's probability. The "
    "visual part of the log-ratio is the student's PMI minus the teacher's.",
    "η": "Eta, the update scale of steering: chosen so the steered update is exactly as long as the standard "
    "one, η = ‖gStd‖ / ‖gStd + γ·gVis‖. Steering turns the update; it does not make it bigger.",
    "γ": "Gamma, the steering weight: how much of ℓVis (VGS) or ℓLang (lang_steer) is added to ℓStd.",
    "λ": "Lambda, the preservation weight: how strongly the loss keeps the student's language prior (ℓLP, on "
    "the most image-dependent tokens) from drifting.",
    "nats": "The unit of these KLs and log-ratios (natural logarithms). 0.69 nats is a factor of 2 in "
    "probability, 2.3 nats a factor of 10.",
}

# Per-token table of page 1: field -> (header in words, hint with the symbol)
TOKEN_COLUMNS = {
    "token": ("token", "the answer's token, in order"),
    "std_kl": ("whole mismatch", "ℓStd = KL(pI‖qI), nats"),
    "lang_kl": ("language mismatch", "ℓLang = KL(px‖qx), nats"),
    "vis_kl": ("visual mismatch", "ℓVis = KL(pI‖q*), nats"),
    "vds": ("image dependence", "VDS = KL(qI‖qx), nats: how much the image changes the teacher here"),
    "logratio": ("log-ratio", "log pI(y) − log qI(y), nats; above 0: the student is more sure than the teacher"),
    "logratio_lang": ("language part", "log px(y) − log qx(y): the log-ratio without the image"),
    "logratio_vis": ("visual part", "student PMI − teacher PMI: what the image adds, student minus teacher"),
    "reading": ("in words", "the sign of the log-ratio, said plainly"),
}

# The guided tour: (page key, what to look at, the next page's file or None, the button's label)
TOUR = [
    (
        "home",
        "This lab shows how a small **student** learns from a larger **teacher** about images. Four pages, "
        "about a minute each: the answers token by token, the gradients' angles, a short training run, and the "
        "paper's claims checked on the toy world.",
        "pages/1_Answers_and_tokens.py",
        "Start: Answers and tokens",
    ),
    (
        "answers",
        "Look at the **token strip** under the four answers: one box per token of the answer. **Blue** means "
        "the student's mismatch with the teacher there comes from its language prior, **orange** from the image; "
        "faint boxes are small mismatches. Hover a box for its numbers.",
        "pages/2_Gradient_angles.py",
        "Next: Gradient angles",
    ),
    (
        "angles",
        "Measure the angles, then look at the **plane**: the grey arrow is the standard update, orange the "
        "visual one, green what steering does with them. Below 90° two losses pull the same way.",
        "pages/3_Distill_and_compare.py",
        "Next: Distill and compare",
    ),
    (
        "distill",
        "Run a short training, then compare the **before/after table**: accuracy with and without the image, "
        "with its error bars, and which answers changed.",
        "pages/4_Paper_check.py",
        "Next: Paper check",
    ),
    (
        "paper",
        "The **claims table** says, claim by claim, whether the toy world agrees with the paper: our number "
        "with its error over seeds and a verdict by the stated rule. The figures below it are the evidence.",
        None,
        "Finish the tour",
    ),
]

# Under the uploader while the toy pair is in use: what it can and cannot read.
TOY_UNDERSTANDS = (
    "The toy pair understands only its own world: 64×64 scenes of coloured shapes on a dark background, "
    f"at most one per cell of a 4×4 grid, {len(SHAPES)} shapes ({', '.join(SHAPES)}) and {len(COLOURS)} colours "
    f"({', '.join(COLOURS)}). Such scenes drawn your own way work too (outlined or filled, another size, soft "
    "edges: the teacher answers about 93 % of questions on drawings made by a renderer it never saw). Anything "
    "else is scaled to 64×64 and read as such a scene: a photo gets nonsense. "
    "To try a scene of your own, choose *Build a scene*."
)
