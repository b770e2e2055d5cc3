from tortoise import BaseDBAsyncClient

from daycare.storage.migrations.dialect_guard import dialect_require

RUN_IN_TRANSACTION = True

# The tables engines cache, with the column that names a cached record: a change to one of their rows is announced
# on the channel `daycare_changes` as `<schema> <table> <key>`, in the transaction that makes it, so a rolled-back
# change announces nothing (docs/postgres.md, "Several engines on one database"). An engine alone on its schema
# sets `daycare.notify` to off on its connections: no one listens, so its writes skip the trigger.
CACHED_TABLES = {
    "users": "id",
    "user_connector_keys": "user_id",
    "agents": "id",
    "tasks": "id",
    "tasks_cron": "id",
    "tasks_heartbeat": "id",
    "signals_subscriptions": "id",
    "signals_delayed": "id",
    "channels": "id",
    "expose_endpoints": "id",
    "processes": "id",
    "system_prompts": "id",
}

CHANGE_NOTIFY = """
CREATE FUNCTION daycare_change_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- An update that changes the key announces both keys; the server folds equal payloads of one transaction.
    IF TG_OP <> 'INSERT' THEN
        PERFORM pg_notify('daycare_changes', TG_TABLE_SCHEMA || ' ' || TG_TABLE_NAME || ' '
            || coalesce(to_jsonb(OLD) ->> TG_ARGV[0], ''));
    END IF;
    IF TG_OP <> 'DELETE' THEN
        PERFORM pg_notify('daycare_changes', TG_TABLE_SCHEMA || ' ' || TG_TABLE_NAME || ' '
            || coalesce(to_jsonb(NEW) ->> TG_ARGV[0], ''));
    END IF;
    RETURN NULL;
END $$;"""


def _change_trigger(table: str, key: str) -> str:
    # Qualified through current_schema(): the expected schema is built in pg_temp, where functions are not looked up.
    return f"""
DO $$ BEGIN
    EXECUTE format('CREATE TRIGGER "{table}_change_notify" AFTER INSERT OR UPDATE OR DELETE ON "{table}"'
        ' FOR EACH ROW WHEN (current_setting(''daycare.notify'', true) IS DISTINCT FROM ''off'')'
        ' EXECUTE FUNCTION %I.daycare_change_notify(%L)', current_schema(), '{key}');
END $$;"""


async def upgrade(db: BaseDBAsyncClient) -> str:
    dialect_require(db, "postgres")
    return (
        """
        CREATE TABLE IF NOT EXISTS "trigger_runs" (
    "id" TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    "occurrence_at" BIGINT NOT NULL,
    "claimed_at" BIGINT NOT NULL,
    "engine" TEXT COLLATE "C" NOT NULL
);"""
        + CHANGE_NOTIFY
        + "".join(_change_trigger(table, key) for table, key in CACHED_TABLES.items())
    )


async def downgrade(db: BaseDBAsyncClient) -> str:
    return (
        "".join(f'\nDROP TRIGGER IF EXISTS "{table}_change_notify" ON "{table}";' for table in CACHED_TABLES)
        + """
        DROP FUNCTION IF EXISTS daycare_change_notify();
        DROP TABLE IF EXISTS "trigger_runs";"""
    )


MODELS_STATE = (
    "eJztXf9v47YV/1cI/7Ir4HbX3LV36w0Dcmm6ZrsmxSUdBuwGHS0xNheZ9EgqOaPL/z6S+m"
    "LJomRRcWw5ecAVjaX3SOlD6vHzHh/J30dzHpFYfvOBTHG4/IVOBVaUs9EP6PcRw3Oi/2gS"
    "GaMRXixWAuaCwpPY6gTzXM5exxOpBA6VvnWNY0n0pYjIUNBFVtvoGElFFohfIzUjKLZ1oa"
    "vlglxaKVSUh0TCGBFjdEP0ZUFw9DVn8RJdc2H+I0zSUH5jKo14qGulbPpI5SeM/jchgeJT"
    "ossUupZ//VtfpiwiX4jMfy5ugmtK4qgCqf2/vmnvBEo/hrl6MsPiJytrnn4ShDxO5qwsv1"
    "iqGWeFgn49c3VK9ANjRaISvCyJ46wx8kvp8+oLSiSkeNBodSEi1ziJTSMZ7fQZVtdGQXB+"
    "cRVcnl4FwajWgLlGCfPsUqj7gG58ypS0GMzxlyAmbKpm+ufRd9/dpxWtoEjFTI3/OP548v"
    "Pxxxda6itTJdd9KO1f59mto/TevS0EK5wWY8Ffoa27aUxJFGBVx/w9nZ4x5Ua9qreGvX6f"
    "PtjnF1bgrz6IXaA/NQ/x9Z+Ojl69enP08tX3b797/ebNd29fvtWy9onrt960tND7s7+enV"
    "9V28ZcuL83ff/6ptQe5sIEhzd3WERB7Q4/4k2y9Vvzo/n6Fczw1MJp3ts8cGa1fpP2y6xZ"
    "M3u91YQlWqKz8VpoWc7GCCOZTL42qkjbC2Nq+J3uIO+QqV7hKaLSXKUCTWM+wTGaYRbFxG"
    "WvtlGkw0T9a5Tpjf7d1VrRyMdWpdJgqfpYKioD27gOO8V5TDBrgLyktgb8ROvt0k65v5DO"
    "mLeZmouLD+ZN5lL+N05tz5rhOf/tl/enH198a1tAC1FVskfjUocO9bCuegwIVT0YELwGhH"
    "IDJIuoVwNU9aABejeAm4BekS8NwD+IgGZGeyiIt4B3dfrPq4qNya33i1+O/2nNynyZ3flw"
    "cf7XXLxkgk4+XLx3YG3GW0+4MxVA3B/xBdZ+mgoMZwr8yEtd8yng/0hMpkbxnS1Qh/8n7U"
    "bTKfs7WdpGONPPilnosi9rZP2wUL/PO1d+dfWIAt8VPNvR5zQC+r1JSl/OL9DxydXZxfno"
    "fn8u1AlnjISKC91oowZ3qiIz3uRaGVxS8eCGLDs7Wp8LtR9MKZ+RVtbuD1aIRhpFqt9Jap"
    "cpdZeY/kdQoeHysh5c3uYo0O+jFdCjvJWNDPmyEERKGyTL1FYu15fAgVK5k+TfyMiWpIGz"
    "P+69vLhGouW0fQ6ClfXn4fpwKbs6+vb1m9dvX33/uiBVxZU2LpXzpmaHrdI8PgNNTREc5m"
    "aHueQ4+A/pDx3LB+cw7Hww3+0oPjS8uw7jTeP3yfHlyfGPp/savY813Mo1ZKc3WsdpbES6"
    "Ds0MWfExuqNqhqiSKJfgYmyimXOajnUIswgpfkOYHla1DsIS/e3y4hwpPYw5xugtFvx4g3"
    "UK1bbHZ4iyPkaU1cJVw7rZG8/ln8TwsWtffPWt+kBe1QLgewCvrTW9JYFMjZaTNDXj71R+"
    "CqGQnYeiVsOTD/5ravAB9IDeMgEv1Fca0NX98db8X3nBXSjsuXv/fn9AKMf0moRLI+CBdE"
    "Vpz2inQ8sBIQ6zxTBb/MwboCnq1mxxnlrUbRdGZyApc5cp6R85Ykb5rXFb1EiSFXHdHDe6"
    "SGdUbomQaf4tv0Y4C/m8Q5Td4pjmn7EN8CwED3UN+kLCFI0RFgTNqNSu4hLRyJH6+yg1eE"
    "aSbGUdQ0k5fkGhNG6MJpmvtFRN9WW8KltTba4SAlh7D2BRdk0EYWFf775JH7weYIcHR060"
    "dSMqmOuOrO2lz1dQU4Tu79/968NG90+grtvrMxhYC+znK1jjLH4N4VCGlujbEkS/rP+3UN"
    "YC7PtiX2bMXYloWedJuKq7TxDBeSrBAzNEipSEA0O8a4pIuasNKUckc+t/Tn3cUbPjn0uM"
    "O/j/wawk3CkMkPvYgoRcRNZNR1lh75BxhrKlbrmAyQfhiUKmF1nHHTvSR7ZZsKfTX3Kuun"
    "viOWz572154pDq+cBUT8ga2WXygu9SbfCiH8acTLf36d25PPTuPjPlLVG7ZqK6hVjd0IDf"
    "PVUtjaoPJKuluZADQ70rXa12uCER1jM24V/OFJm7uOrqZitNpUasGzk9RlEijB6ySkizeM"
    "0mK9NIZRZ5N+NGVD/BptTm7ZXbdz7KdG8uu88X2QfNZqY0VU4z+mGmaJ/Wro20NgdEWnI/"
    "n1pAZOc5n8UH5cVhK2pAZXtTWXDUdpneD37Ds0gKyhZ3N+QFle62cq6wkOu84PtaUMIiJI"
    "hucamQyRkmaELUHSEMqTtul2bLMTJBMxIZYmSokuRC9yK0wFSgFxj9GU2+ctGv7Rbu3G3L"
    "JsLhbDi1PyY2ILhx3dmkY9ywhGm6/GzSh5JVHrMrM6soAUHrQ9BWTe1hRCtKYEl7DFvZF2"
    "/oloOkte21tqYJ261t3m5tBdmkN9gTANsXbOztgdR1IRWhf1pa0XUf0A4TaIce7TAQznyF"
    "5c3IwZbt9VaerLREZ4ZshE3Q0OxNZJjBD5ak0siEDdO2R3YHazOrTVm6uZGRe4fSeK7Ne5"
    "9jcWM2OpL8WmXXXYT5Uetq5s8p0+lEm7uRZgtwh90a1vLrSyuKuleygKT6g2HisMhppyu0"
    "qfJbx1ooANwP2IrDOf+5eS+OTA2y5HssEtFDvA/kuTx0c1iRcxiUG9ZrD6gBVlzbrwGqeu"
    "BzHqDPeSI4uxJ0OnUfe1K+Pd7ogQahyGZ0OrihRhbJcEaiJCap5ycSsylf4TTauRP9PNYj"
    "dHmXfYrwTHwhzLyhh49oninItcaP6Sjamjp5i+uVldxYXZKXC2wrzbWaawT/dO/+aamROr"
    "tLKxVgkj2YJIQE9nJYhg/e2z0Z75mBDQGBva0AyEiOD+xlHejufRYV7SMZ9pl39BJz9pj3"
    "L2ntec6/IJUDnvJP3fYAXyvNPbTD5Am2Sx0yLTbDHmOpDF7eYZY1RYiz9I1zQaQXIr3Prw"
    "EGEmn8mWChJvpDagk31mTGm2OOs1yna+CxUMjWz22MG5qDvMyFlaJuRCJucewKSm67+Mc7"
    "g2QNv92kt5Sq23HoclUzxC8hfnkIYwTEL5885JDStFO4wQfbtwsAPhj4YM+vAQbig13SKc"
    "Px6W3DEY/l2+PWLfusoAzIrceBj6joHSjVz3YrOf/twwc0J1h7SIyjBV7GHEdj6xKZ7UrQ"
    "Z/MSnzMJu4uJueByvbZfweM5X1UIi5PPu7lBVsq/knzngm6VlCyuf1WZMrhYQ3axgO/vnu"
    "/DZiM7nDXniQj95swLDQB86Lu7DMydgmULwON3y+Mvk0kZrgY6X5HqxOplScPzNPc/SFTW"
    "RopnVNzujS3RHKtwppsSYc3DlSKCNR/g3rOsTauCKxk6qV63ZcJlXQ9CXEEznWMp9r8Hag"
    "zUeLBW9Vmk2z130HML6IF5SQUg7+OV0Nh5/Elr0t1KCVLtNqfaATeGSYbn1wADcU5+JDFe"
    "kij1PkYOv6QqMO7ikkSpSteZhtxP4MWUAMJ26yB6a+i3emd+zrlUdmOiBRHohWFvY+tZjJ"
    "EgC5MmdEOWzl1At1y65xzDqh4fLyQDMMi0u88CrCeFjc12Y/kL9HmCVBu8H/B+Bm22YWLg"
    "CYNdsqFe9KSqB/SkNz+EmZld93iYmdkZ1iV+5IF4VQtwhxmxg7Pq4PU/X69fO2KMEae/n9"
    "8atx71kQp1TiY0dUQo07L7ByOMYoIj7W5nZ6EZEYmwIPlWwzgUXOorcZwe1OFy7rdW7uOl"
    "DuZQeSYN2iJ8is/3SgE/vdsnD376MyAZ7g2Hmrv3djccepodvLQ+xxpan/680oDuDJz5MC"
    "gbcGbgzCVi/AuZTxq2X60IdOHPwdzK+qftZXozurAHChcMOGGW+Vpia56uNV/PqxBnol7+"
    "Guv5dm3UuaTTnd7mQOW/t0V0Gz9YJ+dyfKjZiD5cFpB+pUffvn7z+u2r718XH2dxpe2bzA"
    "0gcNoBkQDIvNvTZgu+u5eWdQD0HqD/h1PWg2xV1IBr9Sa71dG9qwtd1XoS/f6RXOkar61B"
    "X8f9Jy4InbK/k6VF/0w/J2bOmdZ6OPfAUL/Pe1Z+dUWdBL4rCN5ah9MIpFte2l56fHly/O"
    "NpSgr36DFIie0X3OwypBIdfQYr3Dn2nskjqSmASYMriP47fYvZhS7mgD+cLqbHQuCl8Qfy"
    "0csZd99KmZ4x92o7+613X8euuAAr3wdiDMHJGBT10h92pBHsQ3sdqtAEfXIMNcI+uOfyAH"
    "YPsPNRywfwsg6ADtMZ4OEdbM8HDw88vD4e3umXBZfklEULTt27tK1JjNs8PGJlA5IJdz8j"
    "PrHzNrleuol1WpjxwWIe4hgtuFCICyR5eENUMckT8blG3nka/HZKfbzMqnW4PDOs0mfsVV"
    "Gm2lwVOI3gNA7Gvu7OY8FCf+RePkuhAYD32Q9C8FvqmYJV1gHQ+yzOKYx/5+U5hQYA3sc3"
    "10zJyy/P5AHsPtkFiR6iPcDO5WEJFMQ/Di7+Aemczzed81fBQ+3zjRw+e35r3OasL1Khrv"
    "OwVzOCokQYbSRIyEWUJl1mz4ey4t4hfqf7jZk8tVOndstzzCJzIesZCJutFsNZ3Wd/pDoe"
    "z4MvMPR03e3z+1WQqjTXAB47eOz7t8LDWB8FB7I/Dt3jc22Jvfp3SQUg7wP5nR/cdwB1X6"
    "hn3M+U5PLgOPY5d/3WB+pMHLp1ry13wxtNnoOUQwuvBBGXLjRCn6BUHPM7sx+iDaR6tYFD"
    "FZqgbxMEdtI3mOh3Ns9Wa4bWTZEbSoAdkjfvkLwgYk4zL9fH/lTVoN/36PdF3KAr6IUCEB"
    "t/tG8IWQTYbNvoaVyqimBTNtsU/XBU6IFRKo2ITwevKe7ZroiEsWwsOZBebpBLvCz5SgPA"
    "9iXwrohi2+TOouva/+Gb7/3MqmlzqwJF59rxcXTyNujXNaEN+raBINpkCKWxTVynlzS2QE"
    "1vv5ObLx+M+wN3vqgjeo1pnAjSG9maPiCcT0bo4S/IYfKdkncog/Xoaz0kUUo/lQwW2C8b"
    "qKYIPmcPyhLzqTfyZR0AHZKxDs/oQDLWnhsgxlIFdgDt0QoOZRh/H9QS5Avt3RAVXWiHA0"
    "xPvFxKRea/Cj5fONcVVu6PW09ls5ImFU6Ldl5TOI35BMdmad+CiK9NnhVKS0A4ikhkNn1R"
    "M4LSwvNbWtpcvKZCqnyPGNfSwu0W7pmfKEO+6LS1ehW4INUb+x7F5l/R+iFu9aogWXHvyY"
    "pFb+jsGuUKwM577r+449zQgY2AO5+Ko36pirk8dO9eqaEsovYhPRCvKEEX77V8NmNPnTMq"
    "Cg3o5r3yFg0Qrvm4trn9ktaeJ/YLTjPgeX2IY0Ec6/k1wEC89it+Q9ilwkr+zBMRL0cOz7"
    "0mM27z3pWRtrk2Mpit5DevNzR6dlVfaM42l8lc2sPNTRljlJ5wbneFtzK24neIMm0FzLZ2"
    "0jjiuRsu+J1jreH2y3ceMWHKS+OKVmTF6ctb2tvi24+dKJXTwSOvox5UH8QvBjBGD6/flm"
    "X+7l59GaIH158WtuEBGgMTVfS6G8Wq3naM4hAO5NjJmARLLQfEfeHYjj1tHePYY7F975gY"
    "4O4JN2WLRKWDh2fm37rmoSdF7djn4Inqi3xNFaD320MXhzMSaOc56gW/Ux2aoEcT3AmqyA"
    "PaYF0fGsGvEbQbWIf9p5jjxvC1dJH6a6NxIEi3gPbjxW/vP5yiXz+enpxdnl2cV0bU9GY1"
    "kvfx9PjDgAIZgk6nRHxM2MgVwljdHbcGL1K5QCTMY5ukWDe6VIiHYSIEYSFBmCHCppQRFM"
    "aYmiPf0wMrBWcoqwO9+Gx+/vDn/DeN/vL5K5M0oEVNlGFGtBM5IVghwRMWuXdP2k3Vn9gn"
    "ds6VPap+isMlsoB9g47TOtCc3xKJPq+eIsDqM7rmwrQroswWqoFkUmNJzYOYrZk1+vSWCJ"
    "nGVBI2RpIjok3bJ1Z6H9MUiJu/7mZUmz2tkb+gOZxZohcGlD8u9Mc5FUR+M4/G6NPo0sjh"
    "OJM0Beh/BBn/coIl+TT6qmMmBmQu7D1zodKtPLniuipEqfuPl6k58Z+nqehBA/RugNSW+Q"
    "QHVhoQHegYHRgInTkmQg92LiqT3WmlMXgls4nANIO/5bERTq5+4MnVhio5E26aWUdJ5UkY"
    "gEcjH6Wot/6oPBDOxJ8gut++fNkBXS3ViK69V0sbU8S1CtXs69qYNJarrKEc0VCh/6GYyk"
    "PkEC3gGjDaB7P1ccuAkzlAeQF7H8zu/w+Vo2CF"
)
