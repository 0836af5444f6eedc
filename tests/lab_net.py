"""The loopback /16 the tests' BMC labs live in.

Labs bind fixed addresses (127.<x>.<n>.<host>), so two test runs on one machine — a developer's
and CI's, say — would collide on them. ``RACKSMITH_TEST_LOOPBACK_OCTET`` moves a run's labs to
another second octet; the default keeps them in 127.0.0.0/16.
"""

import os

LAB_NET = f"127.{int(os.environ.get('RACKSMITH_TEST_LOOPBACK_OCTET', '0'))}"
