"""A CSV field longer than the ``csv`` module's default 131,072 characters, but well within MaxPayloadInMB.

Through the real `batchlane transform` CLI with DataProcessing (so the runner parses each CSV record) and through
``/invocations`` of the default handler with ``text/csv`` (so the codec parses the body).
"""

from __future__ import annotations

from pathlib import Path

from tests.models import echo_cli_env, run_cli, tree
from tests.servers import loaded_model_server

LONG = "x" * 200_000


def test_transform_with_input_filter_and_join_on_a_200k_character_field(tmp_path: Path) -> None:
    env = echo_cli_env(tmp_path / "home")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "rows.csv").write_text(f'1,"{LONG}",0.5\n2,short,0.7\n')

    done = run_cli(
        ["transform", "--model", "echo", "--input", f"{tmp_path}/in/", "--output", f"{tmp_path}/out/",
         "--content-type", "text/csv", "--accept", "text/csv", "--split-type", "Line",
         "--input-filter", "$[1:]", "--join-source", "Input", "--name", "long-field", "-q"],
        env,
        timeout=180,
    )  # fmt: skip

    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert "long-field: Completed" in done.stdout
    # Every input column, then the echo model's answer: the filtered fields it received joined with "|".
    assert tree(tmp_path / "out") == {
        "rows.csv.out": f"1,{LONG},0.5,{LONG}|0.5\n2,short,0.7,short|0.7\n".encode()
    }


def test_invocations_decode_a_200k_character_csv_field(tiny_bert_dir: Path) -> None:
    with loaded_model_server(tiny_bert_dir) as client:
        body = f'"{" ".join(["word"] * 40_000)}"\nshort text\n'
        assert len(body) > 200_000
        response = client.post(
            "/invocations", content=body, headers={"content-type": "text/csv", "accept": "application/json"}
        )
    assert response.status_code == 200, response.text
    assert len(response.json()) == 2
