"""The data layer: every format loads to the same rows, bad data gets a specific message, splits and sampling.

The rows are drawn here with PIL (a user's images, not the toy world's renderer) and written in each format a
user might have: an image folder with metadata.jsonl / metadata.csv / train-test subfolders, TRL's JSONL,
LLaMA-Factory's and ShareGPT's message lists, `save_to_disk`, Parquet, a zip, and rows in memory.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from vlod_core.archive import ArchiveError, extract_zip
from vlod_core.data import DataError, Row, RowSampler, split_rows
from vlod_core.sources import from_memory, load_data, save_image_folder

COLOURS = {"red": (220, 40, 40), "green": (40, 190, 60), "blue": (50, 90, 240), "yellow": (240, 210, 30)}
# (file, shape, colour, question, answer): answer None where a user left it out
ROWS = [
    ("a.png", "circle", "red", "what color is the circle ?", "it is red"),
    ("b.png", "square", "blue", "what color is the square ?", "it is blue"),
    ("c.png", "circle", "green", "which shape is green ?", "the circle"),
    ("d.png", "square", "yellow", "which shape is yellow ?", None),
]


def draw(shape: str, colour: str, size: int = 96) -> Image.Image:
    image = Image.new("RGB", (size, size), (0, 0, 0))
    box = (size // 4, size // 4, 3 * size // 4, 3 * size // 4)
    (ImageDraw.Draw(image).ellipse if shape == "circle" else ImageDraw.Draw(image).rectangle)(box, fill=COLOURS[colour])
    return image


def write_images(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, shape, colour, _, _ in ROWS:
        draw(shape, colour).save(folder / name)


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def metadata_records() -> list[dict]:
    return [{"file_name": name, "question": q} | ({"answer": a} if a is not None else {}) for name, _, _, q, a in ROWS]


def signature(data) -> list[tuple]:
    """What a row is, independent of where it came from: question, answer and the pixels."""
    return sorted((row.question, row.answer, np.asarray(row.load_image()).tobytes()) for row in data.rows)


@pytest.fixture(scope="module")
def reference():
    return signature(from_memory([(draw(s, c), q, a) for _, s, c, q, a in ROWS]))


# --- each format ---------------------------------------------------------------------------------------------


def folder_jsonl(tmp: Path) -> Path:
    write_images(tmp / "folder")
    write_jsonl(tmp / "folder" / "metadata.jsonl", metadata_records())
    return tmp / "folder"


def folder_csv(tmp: Path) -> Path:
    write_images(tmp / "csvfolder")
    with open(tmp / "csvfolder" / "metadata.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["file_name", "question", "answer"])
        writer.writeheader()
        for record in metadata_records():
            writer.writerow({"answer": ""} | record)
    return tmp / "csvfolder"


def trl_text(tmp: Path) -> Path:
    write_images(tmp / "img")
    records = [
        {"prompt": q, "image": f"img/{n}"} | ({"completion": a} if a is not None else {}) for n, _, _, q, a in ROWS
    ]
    return write_jsonl(tmp / "trl.jsonl", records)


def trl_conversational(tmp: Path) -> Path:
    write_images(tmp / "img")
    records = []
    for n, _, _, q, a in ROWS:
        prompt = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": q}]}]
        completion = [{"role": "assistant", "content": a}] if a is not None else None
        records.append({"prompt": prompt, "images": [f"img/{n}"]} | ({"completion": completion} if completion else {}))
    return write_jsonl(tmp / "trl_chat.jsonl", records)


def llamafactory(tmp: Path) -> Path:
    write_images(tmp / "img")
    records = []
    for n, _, _, q, a in ROWS:
        messages = [{"role": "user", "content": f"<image>{q}"}]
        if a is not None:
            messages.append({"role": "assistant", "content": a})
        records.append({"messages": messages, "images": [f"img/{n}"]})
    return write_jsonl(tmp / "llamafactory.jsonl", records)


def sharegpt(tmp: Path) -> Path:
    write_images(tmp / "img")
    records = []
    for n, _, _, q, a in ROWS:
        turns = [{"from": "human", "value": f"<image>\n{q}"}] + ([{"from": "gpt", "value": a}] if a else [])
        records.append({"conversations": turns, "images": [f"img/{n}"]})
    path = tmp / "sharegpt.json"
    path.write_text(json.dumps(records))
    return path


def _hf_dataset():
    import datasets

    table = {
        "image": [draw(s, c) for _, s, c, _, _ in ROWS],
        "question": [q for *_, q, _ in ROWS],
        "answer": [a for *_, a in ROWS],
    }
    return datasets.Dataset.from_dict(table).cast_column("image", datasets.Image())


def saved(tmp: Path) -> Path:
    _hf_dataset().save_to_disk(str(tmp / "saved"))
    return tmp / "saved"


def parquet(tmp: Path) -> Path:
    _hf_dataset().to_parquet(str(tmp / "rows.parquet"))
    return tmp / "rows.parquet"


def zipped(tmp: Path) -> Path:
    folder = folder_jsonl(tmp)
    path = tmp / "shapes.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for file in sorted(folder.iterdir()):
            archive.write(file, f"shapes/{file.name}")
    return path


FORMATS = [folder_jsonl, folder_csv, trl_text, trl_conversational, llamafactory, sharegpt, saved, parquet, zipped]


@pytest.mark.parametrize("make", FORMATS, ids=[f.__name__ for f in FORMATS])
def test_every_format_loads_to_the_same_rows(make, tmp_path, reference):
    data = load_data(make(tmp_path), cache_dir=str(tmp_path / "cache"))
    assert data.skipped == []
    assert signature(data) == reference


def test_split_subfolders_become_the_split(tmp_path):
    for split, rows in (("train", ROWS[:3]), ("test", ROWS[3:])):
        folder = tmp_path / "data" / split
        folder.mkdir(parents=True)
        for name, shape, colour, question, answer in rows:
            draw(shape, colour).save(folder / name)
        write_jsonl(folder / "metadata.jsonl", [{"file_name": r[0], "question": r[3], "answer": r[4]} for r in rows])
    data = load_data(tmp_path / "data", cache_dir=str(tmp_path / "cache"))
    split = split_rows(data.rows)
    assert [r.question for r in split.eval] == [ROWS[3][3]] and len(split.train) == 3
    assert not split.seen_in_training and "own split" in split.how


# --- bad data: a specific message, and good rows are kept ---------------------------------------------------


def folder_with(tmp: Path, records: list[dict], extra_files: dict[str, bytes] | None = None) -> Path:
    folder = tmp / "bad"
    write_images(folder)
    for name, content in (extra_files or {}).items():
        (folder / name).write_bytes(content)
    write_jsonl(folder / "metadata.jsonl", records)
    return folder


BAD_ROWS = [
    ({"file_name": "missing.png", "question": "what ?"}, None, "missing.png: no such image file"),
    ({"file_name": "notes.png", "question": "what ?"}, {"notes.png": b"just text"}, "not an image vlod can read"),
    ({"file_name": "a.png", "question": "   "}, None, "no question"),
    ({"file_name": "a.png", "question": "w" * 10_000}, None, "the question has 10,000 characters"),
]


@pytest.mark.parametrize(("record", "files", "message"), BAD_ROWS, ids=["missing", "not-image", "no-question", "long"])
def test_bad_row_is_skipped_with_its_reason_or_stops_a_strict_load(tmp_path, record, files, message):
    folder = folder_with(tmp_path, metadata_records()[:2] + [record], files)
    data = load_data(folder, cache_dir=str(tmp_path / "cache"))
    assert len(data.rows) == 2 and len(data.skipped) == 1
    assert message in data.skipped[0] and "row 3" in data.skipped[0]
    assert "1 skipped" in data.summary()
    with pytest.raises(DataError, match=message):
        load_data(folder, strict=True, cache_dir=str(tmp_path / "cache"))


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (
            {"messages": [{"role": "user", "content": "<image>what ?"}], "images": ["a.png", "b.png"]},
            "2 images in one row",
        ),
        (
            {"messages": [{"role": "user", "content": "<image><image>what ?"}], "images": ["a.png"]},
            "refers to 2 images",
        ),
        (
            {
                "messages": [{"role": "user", "content": "<image>a ?"}, {"role": "user", "content": "b ?"}],
                "images": ["a.png"],
            },
            "2 user turns",
        ),
    ],
    ids=["two-images", "tag-count", "two-questions"],
)
def test_messages_rows_that_are_not_one_image_one_question(tmp_path, record, message):
    write_images(tmp_path)
    good = {"messages": [{"role": "user", "content": "<image>what ?"}], "images": ["a.png"]}
    data = load_data(write_jsonl(tmp_path / "rows.jsonl", [good, record]), cache_dir=str(tmp_path / "cache"))
    assert len(data.rows) == 1 and message in data.skipped[0]


def test_a_missing_column_lists_what_was_found_and_expected(tmp_path):
    write_images(tmp_path)
    path = write_jsonl(tmp_path / "rows.jsonl", [{"file_name": "a.png", "query": "what ?", "label": "red"}])
    with pytest.raises(DataError, match=r"no question column: found \['file_name', 'label', 'query'\]; expected"):
        load_data(path, cache_dir=str(tmp_path / "cache"))


def test_an_empty_set_and_a_set_with_no_good_row(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(DataError, match="empty.jsonl"):
        load_data(empty, cache_dir=str(tmp_path / "cache"))
    folder = folder_with(tmp_path, [{"file_name": "gone.png", "question": "q ?"}])
    with pytest.raises(DataError, match="no usable rows.*gone.png"):
        load_data(folder, cache_dir=str(tmp_path / "cache"))


def test_not_a_data_set(tmp_path):
    (tmp_path / "plain").mkdir()
    with pytest.raises(DataError, match="no metadata.jsonl or metadata.csv"):
        load_data(tmp_path / "plain")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="expected a .jsonl"):
        load_data(tmp_path / "notes.txt")
    with pytest.raises(DataError, match="no such file or folder"):
        load_data(tmp_path / "nowhere")


def test_hub_id_fails_fast_and_clearly_without_a_network(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(DataError, match="Hub is unreachable.*save_to_disk or a Parquet file"):
        load_data("someone/some-vqa-set")


# --- zips are untrusted ----------------------------------------------------------------------------------------


def zip_bytes(members: dict[str, bytes], symlink: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = 0o120777 << 16  # a symbolic link
            archive.writestr(info, "/etc/passwd")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (zip_bytes({"../evil.txt": b"x"}), r"\.\./evil.txt: a path that leads outside"),
        (zip_bytes({"/etc/evil": b"x"}), "absolute paths are not allowed"),
        (zip_bytes({"ok.txt": b"x"}, symlink="link"), "link: links are not allowed"),
        (zip_bytes({"bomb.bin": b"\0" * (8 * 2**20)}), "bomb.bin: compressed .* possible zip bomb"),
        (zip_bytes({f"f{i}.txt": b"x" for i in range(6)}), "6 members; the limit is 5"),
        (b"PK\x03\x04 not really a zip", "not a readable zip"),
    ],
    ids=["traversal", "absolute", "link", "bomb", "too-many", "broken"],
)
def test_unsafe_zip_is_refused_before_anything_is_written(tmp_path, data, message):
    target = tmp_path / "out"
    target.mkdir()
    with pytest.raises(ArchiveError, match=message):
        extract_zip(data, target, max_members=5)
    assert list(target.iterdir()) == []
    assert not (tmp_path / "evil.txt").exists()


def test_a_zip_over_the_total_size_is_stopped(tmp_path):
    noise = np.random.default_rng(0).bytes(1_000_000)  # incompressible: only the total size can stop it
    data = zip_bytes({"a.bin": noise, "b.bin": noise})
    with pytest.raises(ArchiveError, match="unpacks to more than"):
        extract_zip(data, tmp_path, max_total=1_500_000)


def test_metadata_in_a_zip_cannot_point_outside_it(tmp_path):
    records = [{"file_name": "a.png", "question": "q ?"}, {"file_name": "../../secret.png", "question": "q ?"}]
    buffer = io.BytesIO()
    draw("circle", "red").save(buffer, format="PNG")
    data = zip_bytes(
        {"a.png": buffer.getvalue(), "metadata.jsonl": "".join(json.dumps(r) + "\n" for r in records).encode()}
    )
    draw("circle", "red").save(tmp_path / "secret.png")
    path = tmp_path / "upload.zip"
    path.write_bytes(data)
    with pytest.raises(DataError, match=r"'\.\./\.\./secret.png'.*inside the directory"):
        load_data(path, workdir=tmp_path, cache_dir=str(tmp_path / "cache"))
    jsonl = zip_bytes(
        {"a.png": buffer.getvalue(), "rows.jsonl": "".join(json.dumps(r) + "\n" for r in records).encode()}
    )
    path.write_bytes(jsonl)
    loaded = load_data(path, workdir=tmp_path, cache_dir=str(tmp_path / "cache"))  # JSON rows name paths too
    assert len(loaded.rows) == 1 and "../../secret.png: the image path leads outside" in loaded.skipped[0]


# --- splits and sampling ---------------------------------------------------------------------------------------


def rows(n: int) -> list[Row]:
    return [Row(draw("circle", "red", 32), f"question {i} ?", "it is red") for i in range(n)]


def test_a_set_without_a_split_holds_out_a_seeded_fraction():
    data = rows(50)
    first, again, other = split_rows(data, 0.2, seed=0), split_rows(data, 0.2, seed=0), split_rows(data, 0.2, seed=1)
    assert len(first.eval) == 10 and len(first.train) == 40 and not first.seen_in_training
    assert {id(r) for r in first.eval}.isdisjoint({id(r) for r in first.train})
    assert [r.question for r in first.eval] == [r.question for r in again.eval]
    assert [r.question for r in first.eval] != [r.question for r in other.eval]


def test_a_tiny_set_trains_and_evaluates_on_the_same_rows_and_says_so():
    split = split_rows(rows(6))
    assert split.train == split.eval and split.seen_in_training
    assert "seen in training" in split.how and split.describe()["eval_seen_in_training"] is True


def test_sampler_draws_without_replacement_within_an_epoch_and_is_seeded():
    data = rows(10)
    sampler = RowSampler(data)
    epoch = sampler.prompts(0, 5, seed=3) + sampler.prompts(1, 5, seed=3)
    assert sorted(r.question for r in epoch) == sorted(r.question for r in data)
    assert [r.question for r in RowSampler(data).prompts(1, 5, seed=3)] == [r.question for r in epoch[5:]]
    assert [r.question for r in sampler.prompts(0, 5, seed=4)] != [r.question for r in epoch[:5]]
    spanning = sampler.prompts(1, 7, seed=3)  # rows 7..13: the end of epoch 0, the start of epoch 1
    assert len(spanning) == 7


def test_in_memory_rows_refuse_an_empty_question_by_row():
    data = from_memory([(draw("circle", "red"), "what ?", None), (draw("square", "blue"), "", "x")])
    assert len(data.rows) == 1 and data.skipped == ["my images row 2: no question"]
    with pytest.raises(DataError, match="no usable rows"):
        from_memory([(draw("circle", "red"), " ", None)])


def test_the_shipped_example_set_loads(tmp_path):
    folder = Path(__file__).resolve().parents[1] / "examples" / "shapes"
    data = load_data(folder, cache_dir=str(tmp_path / "cache"))
    assert len(data.rows) >= 12 and not data.skipped and all(r.answer for r in data.rows)


def test_rows_saved_as_an_image_folder_load_back_the_same(tmp_path, reference):
    shared = {}
    items = [(shared.setdefault((s, c), draw(s, c)), q, a) for _, s, c, q, a in ROWS]
    folder = save_image_folder(items, tmp_path / "mine")
    assert len(list(folder.glob("*.png"))) == len(shared)
    assert signature(load_data(folder, cache_dir=str(tmp_path / "cache"))) == reference


# --- data as it is downloaded: a Hub repository folder, the_cauldron, LLaVA-Instruct ------------------------


def _shard(path: Path, rows: list[tuple]) -> None:
    """One Parquet shard of (image, question, answer) rows with the images embedded, as the Hub stores them."""
    import datasets

    path.parent.mkdir(parents=True, exist_ok=True)
    table = {
        "image": [draw(s, c) for _, s, c, _, _ in rows],
        "question": [q for *_, q, _ in rows],
        "answer": [a for *_, a in rows],
    }
    datasets.Dataset.from_dict(table).cast_column("image", datasets.Image()).to_parquet(str(path))


def hub_repository(tmp: Path) -> Path:
    """A data set repository as `huggingface-cli download --repo-type dataset` leaves it: README and shards."""
    repo = tmp / "someone--shapes-vqa"
    _shard(repo / "data" / "train-00000-of-00002.parquet", ROWS[:2])
    _shard(repo / "data" / "train-00001-of-00002.parquet", ROWS[2:3])
    _shard(repo / "data" / "test-00000-of-00001.parquet", ROWS[3:])
    (repo / "README.md").write_text(
        "---\nlicense: cc-by-4.0\ntask_categories:\n- visual-question-answering\n---\n# shapes\n"
    )
    return repo


def test_a_hub_repository_folder_loads_with_its_own_split(tmp_path, reference):
    data = load_data(hub_repository(tmp_path), cache_dir=str(tmp_path / "cache"))
    assert data.skipped == [] and signature(data) == reference
    assert "data set repository" in data.origin
    split = split_rows(data.rows)
    assert [r.question for r in split.eval] == [ROWS[3][3]] and len(split.train) == 3
    assert not split.seen_in_training and split.how == "the source's own split (test, train)"


def test_a_zipped_hub_repository_and_one_configuration_folder_load_too(tmp_path, reference):
    repo = hub_repository(tmp_path)
    path = tmp_path / "repo.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for file in sorted(repo.rglob("*")):
            if file.is_file():
                archive.write(file, f"{repo.name}/{file.relative_to(repo)}")
    zipped = load_data(path, workdir=tmp_path, cache_dir=str(tmp_path / "cache"))
    assert signature(zipped) == reference and {r.split for r in zipped.rows} == {"train", "test"}
    # A repository with several configurations (the_cauldron: one folder per source): one of them is chosen.
    multi = tmp_path / "multi"
    _shard(multi / "circles" / "train-00000-of-00001.parquet", ROWS[:1])
    _shard(multi / "squares" / "train-00000-of-00001.parquet", ROWS[1:2])
    configs = "".join(
        f"- config_name: {name}\n  data_files:\n  - split: train\n    path: {name}/train-*\n"
        for name in ("circles", "squares")
    )
    (multi / "README.md").write_text(f"---\nconfigs:\n{configs}---\n")
    with pytest.raises(DataError, match=r"several configurations \('circles', 'squares'\); pass the folder of one"):
        load_data(multi, cache_dir=str(tmp_path / "cache"))
    assert [r.question for r in load_data(multi / "squares", cache_dir=str(tmp_path / "cache")).rows] == [ROWS[1][3]]


def cauldron(tmp: Path) -> Path:
    """the_cauldron's schema: `images` a list, `texts` a list of {user, assistant, source} turns."""
    import datasets

    turns = [
        [{"user": ROWS[0][3], "assistant": ROWS[0][4], "source": "shapes"}],
        [
            {"user": ROWS[1][3], "assistant": ROWS[1][4], "source": "shapes"},
            {"user": "which shape is blue ?", "assistant": "the square", "source": "shapes"},
        ],
    ]
    table = {"images": [[draw("circle", "red")], [draw("square", "blue")]], "texts": turns}
    features = datasets.Features(
        {
            "images": datasets.List(datasets.Image()),
            "texts": datasets.List({"user": datasets.Value("string"), "assistant": datasets.Value("string"),
                                    "source": datasets.Value("string")}),
        }
    )  # fmt: skip
    folder = tmp / "the_cauldron" / "shapes"
    folder.mkdir(parents=True)
    datasets.Dataset.from_dict(table, features=features).to_parquet(str(folder / "train-00000-of-00001.parquet"))
    return folder


def test_the_cauldron_rows_become_one_row_per_turn_with_the_rows_image(tmp_path):
    data = load_data(cauldron(tmp_path), cache_dir=str(tmp_path / "cache"))
    assert data.skipped == []
    got = [(r.question, r.answer, r.label) for r in data.rows]
    assert got == [
        (ROWS[0][3], ROWS[0][4], "shapes row 1"),
        (ROWS[1][3], ROWS[1][4], "shapes row 2 turn 1"),
        ("which shape is blue ?", "the square", "shapes row 2 turn 2"),
    ]
    blue = np.asarray(draw("square", "blue")).tobytes()
    assert [np.asarray(r.load_image()).tobytes() == blue for r in data.rows] == [False, True, True]
    assert data.rows[1].group == data.rows[2].group is not None and data.rows[0].group is None


def test_a_records_turns_stay_on_one_side_of_a_held_out_split():
    rows_ = [Row(draw("circle", "red", 32), f"q {i} ?", "a", group=f"record {i // 3}") for i in range(30)]
    split = split_rows(rows_, 0.2, seed=0)
    held = {r.group for r in split.eval}
    assert len(held) == 2 and held.isdisjoint({r.group for r in split.train}) and len(split.eval) == 6
    assert "turns all held out together" in split.how
    alone = split_rows([Row(r.image, r.question, r.answer, group="one") for r in rows_])
    assert alone.seen_in_training and "turns of one record" in alone.how


def test_the_cauldron_keeps_todays_skip_rules(tmp_path):
    write_images(tmp_path)
    records = [
        {
            "images": ["a.png"],
            "texts": [{"user": "what color is the circle ?", "assistant": "it is red"}, {"user": " "}],
        },
        {"images": ["a.png", "b.png"], "texts": [{"user": "which is red ?", "assistant": "the circle"}]},
        {"images": ["missing.png"], "texts": [{"user": "what ?"}]},
        {"images": ["b.png"], "texts": []},
    ]
    data = load_data(write_jsonl(tmp_path / "cauldron.jsonl", records), cache_dir=str(tmp_path / "cache"))
    assert [r.question for r in data.rows] == ["what color is the circle ?"]
    assert data.skipped == [
        "cauldron row 1 turn 2: no question",
        "cauldron row 2: 2 images in one row; one image per row is supported",
        "cauldron row 3: missing.png: no such image file",
        "cauldron row 4: texts has no turns",
    ]
    with pytest.raises(DataError, match="cauldron row 1 turn 2: no question"):
        load_data(tmp_path / "cauldron.jsonl", strict=True, cache_dir=str(tmp_path / "cache"))


def test_llava_instruct_json_list_loads(tmp_path):
    """LLaVA-Instruct-150K: a JSON list; `image` singular, relative to the image folder; `<image>\\n` first."""
    write_images(tmp_path / "coco")
    records = [
        {
            "id": "000000000001",
            "image": "coco/a.png",
            "conversations": [{"from": "human", "value": f"<image>\n{ROWS[0][3]}"}, {"from": "gpt", "value": ROWS[0][4]}],
        },
        {
            "id": "000000000002",
            "image": "coco/b.png",
            "conversations": [{"from": "human", "value": f"{ROWS[1][3]}\n<image>"}, {"from": "gpt", "value": ROWS[1][4]}],
        },
        {
            "id": "000000000003",
            "image": "coco/c.png",
            "conversations": [
                {"from": "human", "value": "<image>\nwhat is here ?"}, {"from": "gpt", "value": "shapes"},
                {"from": "human", "value": "and which is green ?"}, {"from": "gpt", "value": "the circle"},
            ],
        },
    ]  # fmt: skip
    path = tmp_path / "llava_instruct_150k.json"
    path.write_text(json.dumps(records))
    data = load_data(path, cache_dir=str(tmp_path / "cache"))
    assert [(r.question, r.answer) for r in data.rows] == [(q, a) for *_, q, a in ROWS[:2]]
    assert np.asarray(data.rows[0].load_image()).tobytes() == np.asarray(draw("circle", "red")).tobytes()
    assert data.skipped == ["llava_instruct_150k row 3: 2 user turns; one question per row is supported"]
    split = split_rows(data.rows)
    assert split.seen_in_training  # no split of its own, and too few rows to hold any out
