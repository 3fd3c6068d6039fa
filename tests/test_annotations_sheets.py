"""The readers on small invented sheets of the real layouts: every row check, every bad file."""

from __future__ import annotations

import json
from pathlib import Path

import openpyxl
import pytest
from typer.testing import CliRunner

from medn.data.annotations import AnnotationError, load_annotations
from medn.data.annotations.timing import check_timing
from medn.data.records import ActionUnit as AU
from orchestrator.cli.app import app

CASME2_HEADER = ["Subject", "Filename", None, "OnsetFrame", "ApexFrame", "OffsetFrame", None,
                 "Action Units", "Estimated Emotion"]
SAMM_HEADER = ["Subject", "Filename", "Inducement Code", "Onset Frame", "Apex Frame",
               "Offset Frame", "Duration", "Micro", "Action Units", "Estimated Emotion",
               "Objective Classes", "Notes"]
CASME3_HEADER = ["Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Objective class",
                 "emotion"]


def write_book(path: Path, sheets: dict[str, list[list[object]]]) -> Path:
    """Write an .xlsx with the given sheets (in order), each a list of rows from row 1."""
    book = openpyxl.Workbook()
    book.remove(book.active)
    for name, rows in sheets.items():
        sheet = book.create_sheet(name)
        for index, row in enumerate(rows, start=1):
            for col, value in enumerate(row, start=1):
                if value is not None:
                    sheet.cell(row=index, column=col, value=value)
    book.save(path)
    return path


def casme2_rows() -> list[list[object]]:
    """A CASME II-shaped sheet (header on row 1, two unnamed empty columns) with bad rows."""
    rows: list[list[object]] = [CASME2_HEADER]
    data = [
        ["01", "EP01_01f", 10, 20, 40, "4+7", "disgust"],           # 2 kept
        ["01", "EP01_02", 5, 15, 30, 12, " Happiness "],             # 3 kept, normalised
        ["02", "EP02_01", 50, "/", 90, "4", "disgust"],              # 4 apex '/'
        ["02", "EP02_02f", 30, 30, 60, "L10", "repression"],         # 5 onset = apex @200fps
        [3, "EP03_01", 1, 5, 9, "?", "surprise"],                    # 6 int subject, AU '?'
        ["03", "EP03_02", 8, 12, 12, "14", "others"],                # 7 apex = offset: fine
        ["04", "EP04_01", "x", 3, 9, "1", "fear"],                   # 8 onset not a frame
        ["04", "EP04_02", 1, 5, 9, "1", "joy"],                      # 9 unknown emotion
        ["01", "EP01_01f", 11, 21, 41, "4", "disgust"],              # 10 duplicate of row 2
        [None, None, None, None, None, None, None],                  # 11 blank: not a clip
        ["05", "EP05_01", 10, 50, 40, "R12", "sadness"],             # 12 apex > offset
        ["05", "EP05_02", 10, 20, 0, "R4", "sad"],                   # 13 offset 0
        [None, "EP06_01", 1, 2, 3, "1", "fear"],                     # 14 no subject
        ["06", "EP06_02", 1, 2, 3, "1", None],                       # 15 no emotion
        ["06", "EP06_03", 9, 5, 9, "1", "fear"],                     # 16 onset = offset
    ]
    for s, f, on, ap, off, au, em in data:
        rows.append([s, f, None, on, ap, off, None, au, em])
    return rows


@pytest.fixture
def casme2_sheet(tmp_path: Path) -> Path:
    return write_book(tmp_path / "casme2.xlsx", {"Sheet1": casme2_rows(), "Sheet2": []})


def test_casme2_layout_every_row_check(casme2_sheet: Path) -> None:
    table = load_annotations("casme2", casme2_sheet)
    kept = {r.row: r for r in table.records}
    assert sorted(kept) == [2, 3, 6, 7, 12, 13]
    assert kept[3].emotion == "happiness" and kept[3].aus == frozenset({AU(12)})
    assert kept[6].subject == "03" and kept[6].aus == frozenset()
    assert (kept[7].onset, kept[7].apex, kept[7].offset) == (8, 12, 12)
    assert kept[12].apex is None and (kept[12].onset, kept[12].offset) == (10, 40)
    assert kept[13].emotion == "sadness" and (kept[13].apex, kept[13].offset) == (20, 20)
    assert kept[2].clip == kept[2].video == "EP01_01f" and kept[2].dataset == "casme2"
    excluded = {i.row: i.reason for i in table.excluded}
    assert sorted(excluded) == [4, 5, 8, 9, 10, 14, 15, 16]
    assert "apex '/'" in excluded[4]
    assert "onset = apex = 30" in excluded[5] and "200 fps" in excluded[5]
    assert "onset 'x' is not a frame number" in excluded[8]
    assert "'joy'" in excluded[9] and "expected one of" in excluded[9]
    assert "duplicate of row 2" in excluded[10]
    assert excluded[14] == "no subject"
    assert excluded[15] == "no emotion"
    assert "single frame" in excluded[16]
    repaired = {i.row: i.reason for i in table.repaired}
    assert sorted(repaired) == [6, 12, 13]
    assert "'3'" in repaired[6] and "'03'" in repaired[6] and "AU cell '?'" in repaired[6]
    assert "apex 50 is outside" in repaired[12]
    assert "offset 0" in repaired[13]
    # nothing dropped silently: every non-blank data row is kept or excluded
    assert len(table.records) + len(table.excluded) == len(casme2_rows()) - 2


def samm_rows() -> list[list[object]]:
    """A SAMM-shaped sheet: 13 preamble rows (text and blanks), header on row 14."""
    preamble: list[list[object]] = [["An invented master sheet"], [], ["Symbol key:"],
                                    ['"/" = or'], []] + [[] for _ in range(8)]
    assert len(preamble) == 13
    data = [
        ["006", "006_1_1", 1, 100, 120, 150, "=F15-D15+1", "Micro - 1/2", "4+7", "Anger", 3,
         None],
        [7, "007_2_1", 2, 200, 230, 260, None, "Micro - 1/2", "(R6 or R12)+R15", "Other", 7,
         "Blinks"],
        ["008", "008_1_1", 1, 50, 40, 90, None, "Micro - 1/2", "R14+17+soft focus", "Contempt",
         2, None],
        ["009", "009_3_1", 1, 10, 20, 30, None, "Micro - 1/2", "12A+ref(24)", "Happiness", 1,
         None],
    ]
    return preamble + [SAMM_HEADER] + data


def test_samm_layout_header_on_row_14(tmp_path: Path) -> None:
    path = write_book(tmp_path / "samm.xlsx", {"MICRO_ONLY": samm_rows()})
    table = load_annotations("samm", path)
    assert [r.row for r in table.records] == [15, 16, 17, 18]
    assert [r.subject for r in table.records] == ["006", "007", "008", "009"]
    assert [r.emotion for r in table.records] == ["anger", "others", "contempt", "happiness"]
    assert table.records[1].aus == frozenset({AU(6, "R", uncertain=True),
                                              AU(12, "R", uncertain=True), AU(15, "R")})
    assert table.records[1].extra["notes"] == "Blinks"
    assert table.records[2].apex is None
    assert table.records[2].extra["au_descriptors"] == "soft focus"
    assert table.excluded == []
    repaired = {i.row: i.reason for i in table.repaired}
    assert sorted(repaired) == [16, 17]
    assert "'7'" in repaired[16] and "'007'" in repaired[16]
    assert "soft focus" in repaired[17] and "apex 40 is outside" in repaired[17]


def casme3_rows() -> list[list[object]]:
    """A CAS(ME)^3-shaped sheet: frame numbers as text, a video holding several clips."""
    return [CASME3_HEADER,
            ["spNO.1", "a", "355", "359", "360", "5", "II", "others"],        # 2
            ["spNO.1", "e", "62", "68", "96", "R12", "I", "Others"],          # 3 video e (x3)
            ["spNO.1", "e", "96", "102", "106", "R12", "I", "happy"],         # 4
            ["spNO.1", "e", "200", "210", "0", "4", "III", "sad"],            # 5 offset 0
            ["spNO.2", "b", "112", "83", "358", "T18", "VII", "fear"],        # 6 apex < onset
            ["spNO.2", "c", "3647", "2668", "2694", "B23", "VII", "anger"],   # 7 onset > offset
            ["spNO.2", "d", "7", "7", "42", "4", "III", "disgust"],           # 8 onset = apex
            ["spNO.2", "e", "5", "9", "0", "4", "III", "disgust"],            # 9 offset 0 ...
            ["spNO.2", "f", "9", "5", "0", "4", "III", "disgust"],            # 10 ... no extent
            ["spNO.3", "a", "9", "12", "30", "4", "III", "surprise"]]         # 11


def test_casme3_layout_several_clips_per_video(tmp_path: Path) -> None:
    # the label sheet is not the first one, as in the real workbook's siblings
    path = write_book(tmp_path / "casme3.xlsx", {"Sheet1": [["junk"]], "label": casme3_rows()})
    table = load_annotations("casme3a", path)
    kept = {r.row: r for r in table.records}
    assert sorted(kept) == [2, 3, 4, 5, 6, 7, 8, 9, 11]
    assert [kept[r].clip for r in (3, 4, 5)] == ["e_62", "e_96", "e_200"]
    assert {kept[r].video for r in (3, 4, 5)} == {"e"}
    assert kept[3].emotion == "others" and kept[4].emotion == "happiness"
    assert kept[5].emotion == "sadness" and kept[5].offset == 210
    assert kept[6].apex is None and (kept[6].onset, kept[6].offset) == (112, 358)
    assert (kept[7].onset, kept[7].apex, kept[7].offset) == (2668, 2668, 2694)
    assert kept[7].clip == "c_3647"              # the id keeps the sheet's onset
    assert (kept[8].onset, kept[8].apex) == (7, 7)
    assert kept[6].aus == frozenset({AU(18, side="T")})
    assert kept[2].extra["objective_class"] == "II"
    excluded = {i.row: i.reason for i in table.excluded}
    assert list(excluded) == [10] and "no known extent" in excluded[10]
    repaired = {i.row: i.reason for i in table.repaired}
    assert sorted(repaired) == [3, 4, 5, 6, 7, 8, 9]
    assert all("video 'e' holds 3 clips (rows 3, 4, 5)" in repaired[r] for r in (3, 4, 5))
    assert "offset 0" in repaired[5]
    assert "apex 83 is outside" in repaired[6]
    assert "onset 3647 is after offset 2694" in repaired[7]
    assert "kept unchanged" in repaired[8] and "30 fps" in repaired[8]


@pytest.mark.parametrize(("cells", "fps", "expected"), [
    ((10, 20, 40), 200, (10, 20, 40, None)),
    (("10", "20", "40"), 30, (10, 20, 40, None)),
    ((10.0, 20.0, 40.0), 30, (10, 20, 40, None)),
    ((10, 10, 40), 200, "onset = apex"),
    ((10, 10, 40), 30, (10, 10, 40, "kept unchanged")),
    ((10, "/", 40), 200, "apex '/'"),
    ((10, None, 40), 200, "apex cell is empty (no frame number)"),
    ((10, float("nan"), 40), 200, "apex cell is empty (no frame number)"),
    ((10, "=B2+1", 40), 200, "apex '=B2+1' is not a frame number"),
    ((10, 20, 0), 30, (10, 20, 20, "offset 0")),
    ((10, 5, 0), 30, "no known extent"),
    ((50, 10, 20), 30, (10, 10, 20, "onset 50 is after offset 20")),
    ((50, 30, 20), 30, "both after offset"),
    ((10, 60, 40), 200, (10, None, 40, "apex 60 is outside")),
    ((10, 10, 10), 30, "single frame"),
    ((10, 20, "4x"), 30, "offset '4x' is not a frame number"),
])
def test_timing_rules(cells: tuple[object, object, object], fps: float,
                      expected: tuple[int, int | None, int, str | None] | str) -> None:
    verdict = check_timing(*cells, fps=fps)
    if isinstance(expected, str):
        assert verdict.exclusion is not None and expected in verdict.exclusion
        return
    assert verdict.exclusion is None
    assert (verdict.onset, verdict.apex, verdict.offset) == expected[:3]
    note = expected[3]
    if note is None:
        assert verdict.notes == ()
    else:
        assert any(note in n for n in verdict.notes)


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(AnnotationError, match=r"nope\.xlsx does not exist"):
        load_annotations("casme2", tmp_path / "nope.xlsx")


def test_not_a_workbook(tmp_path: Path) -> None:
    path = tmp_path / "fake.xlsx"
    path.write_text("Subject,Filename\n01,EP01\n")
    with pytest.raises(AnnotationError, match=r"fake\.xlsx as an Excel workbook"):
        load_annotations("casme2", path)


def test_wrong_sheet_names_the_sheet_and_lists_the_others(tmp_path: Path) -> None:
    path = write_book(tmp_path / "samm_as_casme3.xlsx", {"MICRO_ONLY": samm_rows()})
    with pytest.raises(AnnotationError, match=r"no sheet 'label'.*\['MICRO_ONLY'\]"):
        load_annotations("casme3a", path)


def test_missing_column_names_file_sheet_row_and_column(tmp_path: Path) -> None:
    rows = casme2_rows()
    rows[0] = [c if c != "Estimated Emotion" else "Mood" for c in rows[0]]
    path = write_book(tmp_path / "nocol.xlsx", {"Sheet1": rows})
    with pytest.raises(AnnotationError) as info:
        load_annotations("casme2", path)
    message = str(info.value)
    assert "nocol.xlsx" in message and "'Sheet1'" in message and "header row 1" in message
    assert "missing column 'Estimated Emotion'" in message and "'Mood'" in message


def test_no_header_row(tmp_path: Path) -> None:
    rows = samm_rows()
    path = write_book(tmp_path / "late.xlsx", {"MICRO_ONLY": [[]] * 30 + rows})
    with pytest.raises(AnnotationError, match=r"no header row .*'Subject'.*first 30 rows"):
        load_annotations("samm", path)


def test_bad_au_string_names_row_and_column(tmp_path: Path) -> None:
    rows = casme3_rows()
    rows[3][5] = "4&7"
    path = write_book(tmp_path / "badau.xlsx", {"label": rows})
    with pytest.raises(AnnotationError, match=r"badau\.xlsx, sheet 'label', row 4, column 'AU'"):
        load_annotations("casme3a", path)


def test_unknown_dataset_is_a_value_error(casme2_sheet: Path) -> None:
    with pytest.raises(ValueError, match="expected one of"):
        load_annotations("smic", casme2_sheet)


runner = CliRunner()


def test_cli_json_on_a_fixture(casme2_sheet: Path) -> None:
    result = runner.invoke(app, ["data", "validate", "--dataset", "casme2", "--annotations",
                                 str(casme2_sheet), "--task", "5", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["classes"] == {"happiness": 1, "disgust": 1, "repression": 0,
                                 "surprise": 1, "others": 1}
    assert report["total"] == 4 and report["subjects"] == 2
    # 8 sheet exclusions, then the protocol's (sadness rows 12, 13 are not 5-class labels)
    assert [i["row"] for i in report["excluded"]] == [4, 5, 8, 9, 10, 14, 15, 16, 12, 13]
    assert "not in the 5-class" in report["excluded"][-1]["reason"]
    assert [i["row"] for i in report["repaired"]] == [6, 12, 13]
    assert set(report["excluded"][0]) == {"subject", "filename", "reason", "row"}


def test_cli_table_lists_every_issue(casme2_sheet: Path) -> None:
    result = runner.invoke(app, ["data", "validate", "--dataset", "casme2", "--annotations",
                                 str(casme2_sheet)], terminal_width=200)
    assert result.exit_code == 0, result.output
    for text in ("negative", "EP02_01", "apex '/'", "duplicate of row 2",
                 "apex 50 is outside [onset 10, offset 40]", "subjects"):
        assert text in result.stdout


@pytest.mark.parametrize(("args", "fragments"), [
    (["--dataset", "casme2"], ["--annotations"]),
    (["--dataset", "smic", "--annotations", "x.xlsx"], ["--dataset", "smic"]),
    (["--dataset", "casme2", "--annotations", "missing.xlsx"], ["missing.xlsx", "does not exist"]),
    (["--dataset", "casme2", "--annotations", "."], ["annotation file . is a directory"]),
    (["--dataset", "casme2", "--annotations", "/dev/null"], ["/dev/null is not a regular file"]),
    (["--dataset", "casme2", "--task", "7", "--annotations", "x.xlsx"], ["--task", "3, 5"]),
])
def test_cli_bad_input_exits_2(args: list[str], fragments: list[str]) -> None:
    result = runner.invoke(app, ["data", "validate", *args], terminal_width=200)
    assert result.exit_code == 2
    assert result.stdout == ""
    for fragment in fragments:
        assert fragment in result.stderr


def test_cli_missing_column_exits_2_naming_it(tmp_path: Path) -> None:
    rows = samm_rows()
    rows[13] = [c for c in rows[13] if c != "Apex Frame"]
    path = write_book(tmp_path / "samm_noapex.xlsx", {"MICRO_ONLY": rows})
    result = runner.invoke(app, ["data", "validate", "--dataset", "samm", "--annotations",
                                 str(path), "--json"], terminal_width=300)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "'Apex Frame'" in result.stderr and "samm_noapex.xlsx" in result.stderr


def test_cli_a_sheet_with_no_usable_clip_exits_2_after_listing_why(tmp_path: Path) -> None:
    rows = casme2_rows()
    blank = [rows[0]] + [[None, *row[1:]] for row in rows[1:]]  # every Subject cell blank
    path = write_book(tmp_path / "nosubjects.xlsx", {"Sheet1": blank})
    result = runner.invoke(app, ["data", "validate", "--dataset", "casme2", "--annotations",
                                 str(path)], terminal_width=300)
    assert result.exit_code == 2, result.output
    assert "no subject" in result.stdout  # each excluded row is still listed with its reason
    assert f"--annotations {path}: no usable clip for task 3" in " ".join(result.stderr.split())
    as_json = runner.invoke(app, ["data", "validate", "--dataset", "casme2", "--annotations",
                                  str(path), "--json"])
    assert as_json.exit_code == 2 and json.loads(as_json.stdout)["total"] == 0


def test_a_path_in_a_subject_or_filename_cell_is_excluded(tmp_path: Path) -> None:
    rows = [CASME2_HEADER,
            ["01", "EP01_01f", None, 10, 20, 40, None, "4", "disgust"],
            ["../../etc", "EP01_02", None, 10, 20, 40, None, "4", "disgust"],
            ["02", "../passwd", None, 10, 20, 40, None, "4", "disgust"],
            ["03", "..", None, 10, 20, 40, None, "4", "disgust"]]
    table = load_annotations("casme2", write_book(tmp_path / "paths.xlsx", {"Sheet1": rows}))
    assert [r.video for r in table.records] == ["EP01_01f"]
    reasons = {issue.row: issue.reason for issue in table.excluded}
    assert reasons == {3: "subject '../../etc' is not a plain folder name",
                       4: "filename '../passwd' is not a plain folder name",
                       5: "filename '..' is not a plain folder name"}
