"""Each cloud-config key: what it plans, and its problems with line numbers."""

from __future__ import annotations

import base64
import gzip
import textwrap

import pytest

from fleetd.cloudinit import document
from fleetd.cloudinit.context import Context
from fleetd.cloudinit.metadata import Metadata
from fleetd.cloudinit.plan import FileWrite, Plan
from fleetd.cloudinit.report import Report

METADATA = Metadata({"$private_ipv4": "10.1.2.3"}, {"$private_ipv4": "test"})
FLEETD = "/opt/fleet/bin/fleetd"


def read(body: str) -> tuple[Plan, Report]:
    """Read a cloud-config whose first line is the header (line 1)."""
    text = "#cloud-config\n" + textwrap.dedent(body)
    return document.read(text, METADATA, Context(fleetd=FLEETD))


def errors(report: Report) -> list[tuple[int, str]]:
    return [(problem.line, problem.message) for problem in report.errors]


def warnings(report: Report) -> list[tuple[int, str]]:
    return [(problem.line, problem.message) for problem in report.warnings]


def file_at(plan: Plan, path: str) -> FileWrite:
    return next(write for write in plan.files if str(write.path) == path)


# hostname


def test_hostname_planned() -> None:
    plan, report = read("hostname: node-1.example\n")
    assert report.problems == []
    assert plan.hostname == ("node-1.example", 2)


def test_hostname_invalid() -> None:
    _, report = read("\nhostname: -bad_name\n")
    assert errors(report) == [
        (
            3,
            "invalid hostname '-bad_name': use letters, digits and inner hyphens, "
            "in dot-separated labels of at most 63 characters",
        )
    ]


def test_hostname_list_rejected() -> None:
    _, report = read("hostname:\n  - a\n")
    assert errors(report) == [(3, "hostname must be a string, not a list")]


# ssh_authorized_keys

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGQw user@example"


def test_ssh_keys_for_ssh_user() -> None:
    text = f"ssh_authorized_keys:\n  - {KEY}\n"
    plan, report = read(text)
    assert report.problems == []
    assert len(plan.authorized_keys) == 1
    assert plan.authorized_keys[0].user == "core"
    assert plan.authorized_keys[0].keys == (KEY,)


def test_ssh_key_without_type() -> None:
    _, report = read("ssh_authorized_keys:\n  - AAAAC3Nz user\n")
    assert errors(report) == [
        (
            3,
            "invalid SSH public key in ssh_authorized_keys[0]: no key type such as "
            "ssh-ed25519 or ssh-rsa; paste the whole line of the .pub file",
        )
    ]


def test_ssh_key_bad_data_skipped() -> None:
    plan, report = read("ssh_authorized_keys:\n  - ssh-rsa not-base64!\n")
    assert errors(report) == []
    assert warnings(report)[0][0] == 3
    assert plan.authorized_keys == []


# users


def test_users_planned() -> None:
    plan, report = read(
        f"""\
        users:
          - name: alice
            groups: [sudo, docker]
            shell: /bin/bash
            no-create-home: yes
            ssh-authorized-keys:
              - {KEY}
        """
    )
    assert report.problems == []
    (user,) = plan.users
    assert user.name == "alice"
    assert user.groups == ("sudo", "docker")
    assert user.shell == "/bin/bash"
    assert user.no_create_home is True
    assert user.ssh_authorized_keys == (KEY,)
    assert user.line == 3


def test_users_problems() -> None:
    _, report = read(
        """\
        users:
          - groups: [a]
          - name: Bad Name
          - name: bob
            coreos-ssh-import-github: bob
            colour: blue
          - name: bob
        """
    )
    assert errors(report) == [
        (3, "users[0].name is missing: give each user a name"),
        (
            4,
            "invalid users[1].name 'Bad Name': use lowercase letters, digits, '_' "
            "and '-', starting with a letter or '_', at most 32 characters",
        ),
        (8, "user 'bob' is listed twice in users"),
    ]
    assert warnings(report) == [
        (
            6,
            "users[2].coreos-ssh-import-github is not supported and ignored: it "
            "fetches keys over the network",
        ),
        (7, "unknown key users[2].colour ignored"),
    ]


# write_files


@pytest.mark.parametrize(
    ("encoding", "content"),
    [
        ("b64", base64.b64encode(b"hello\n").decode()),
        ("base64", base64.b64encode(b"hello\n").decode()),
        ("gzip", None),
        ("gz+b64", base64.b64encode(gzip.compress(b"hello\n")).decode()),
        ("gzip+base64", base64.b64encode(gzip.compress(b"hello\n")).decode()),
    ],
)
def test_write_files_encodings(encoding: str, content: str | None) -> None:
    if content is None:
        # Raw gzip bytes are not valid YAML text, so plain gzip content can
        # only fail to decode; the test pins that error.
        _, report = read(
            f"write_files:\n  - path: /run/a\n    encoding: {encoding}\n"
            "    content: hello\n"
        )
        assert errors(report)[0][0] == 5
        assert errors(report)[0][1].startswith("write_files[0].content is not valid")
        return
    plan, report = read(
        f"write_files:\n  - path: /run/a\n    encoding: {encoding}\n"
        f"    content: {content}\n"
    )
    assert report.problems == []
    assert file_at(plan, "/run/a").content == b"hello\n"


def test_write_files_fields() -> None:
    plan, report = read(
        """\
        write_files:
          - path: /etc/motd
            permissions: 0600
            owner: core:core
            append: on
            content: |
              hello $private_ipv4
        """
    )
    assert report.problems == []
    write = file_at(plan, "/etc/motd")
    assert write.mode == 0o600
    assert write.owner == "core:core"
    assert write.append is True
    assert write.content == b"hello 10.1.2.3\n"
    assert write.line == 3


def test_write_files_problems() -> None:
    _, report = read(
        """\
        write_files:
          - path: relative/file
          - path: /a
            permissions: 0999
          - path: /b
            encoding: rot13
          - path: /c
            owner: "a b"
          - path: /d
            encoding: b64
            content: "%%%"
          - content: x
          - path: /e
            append: maybe
        """
    )
    assert [line for line, _ in errors(report)] == [3, 5, 7, 9, 12, 13, 15]
    messages = [message for _, message in errors(report)]
    assert messages[0] == (
        "invalid write_files[0].path 'relative/file': give an absolute file path "
        "without '..'"
    )
    assert messages[1] == (
        "invalid write_files[1].permissions '0999': write an octal mode such as '0644'"
    )
    assert messages[2].startswith("invalid write_files[2].encoding 'rot13': use one")
    assert messages[3] == "invalid write_files[3].owner 'a b': write user or user:group"
    assert messages[4].startswith("write_files[4].content is not valid base64 data")
    assert messages[5] == "write_files[5].path is missing: name the file to write"
    assert messages[6] == (
        "invalid boolean 'maybe' for write_files[6].append: use true or false"
    )


def test_write_files_same_path_twice() -> None:
    _, report = read(
        "write_files:\n  - path: /a\n    content: x\n  - path: /a\n    content: y\n"
    )
    assert errors(report) == [(5, "/a is also written by line 3: keep one")]


# coreos.etcd


def test_etcd_translated_to_etcd34() -> None:
    plan, report = read(
        """\
        coreos:
          etcd:
            name: node1
            discovery: http://127.0.0.1:2999/v2/keys/discovery/abc
            addr: $private_ipv4:4001
            bind-addr: 0.0.0.0
            peer-addr: $private_ipv4:7001
            snapshot-count: 5000
        """
    )
    assert report.problems == []
    drop_in = file_at(plan, "/run/systemd/system/etcd.service.d/20-cloudinit.conf")
    assert drop_in.content.decode().splitlines()[2:] == [
        'Environment="ETCD_ADVERTISE_CLIENT_URLS=http://10.1.2.3:4001"',
        'Environment="ETCD_DISCOVERY=http://127.0.0.1:2999/v2/keys/discovery/abc"',
        'Environment="ETCD_INITIAL_ADVERTISE_PEER_URLS=http://10.1.2.3:7001"',
        'Environment="ETCD_LISTEN_CLIENT_URLS=http://0.0.0.0:4001"',
        'Environment="ETCD_LISTEN_PEER_URLS=http://10.1.2.3:7001"',
        'Environment="ETCD_NAME=node1"',
        'Environment="ETCD_SNAPSHOT_COUNT=5000"',
    ]
    assert plan.etcd_client_urls == ["http://10.1.2.3:4001"]
    assert "etcd.service" in plan.shipped_units


def test_etcd_problems() -> None:
    _, report = read(
        """\
        coreos:
          etcd:
            addr: http://10.0.0.1:4001
            peer-addr: 10.0.0.1
            peers: 10.0.0.2:7001
            snapshot-count: many
            discovery: https://discovery.etcd.io/<token>
            cluster-active-size: 9
            colour: blue
        """
    )
    assert errors(report) == [
        (
            4,
            "invalid coreos.etcd.addr 'http://10.0.0.1:4001': write host:port, "
            "without a scheme",
        ),
        (5, "invalid coreos.etcd.peer-addr '10.0.0.1': write host:port"),
        (
            6,
            "coreos.etcd.peers is not supported: etcd 3.4 needs a name for each "
            "member; use discovery, or initial-cluster under coreos.etcd2",
        ),
        (7, "invalid coreos.etcd.snapshot-count 'many': use a whole number"),
        (
            8,
            "invalid coreos.etcd.discovery 'https://discovery.etcd.io/<token>': "
            "replace the <token> placeholder with a token from the discovery "
            "service",
        ),
    ]
    assert warnings(report) == [
        (
            9,
            "coreos.etcd.cluster-active-size has no equivalent in etcd 3.4 and "
            "is ignored",
        ),
        (10, "unknown key coreos.etcd.colour ignored"),
    ]


# coreos.etcd2


def test_etcd2_flags_passed_through() -> None:
    plan, report = read(
        """\
        coreos:
          etcd2:
            advertise-client-urls: http://$private_ipv4:2379
            listen-client-urls: http://0.0.0.0:2379,http://0.0.0.0:4001
            initial-cluster: a=http://10.0.0.1:2380,b=http://10.0.0.2:2380
            initial-cluster-state: new
            strict-reconfig-check: off
            ca-file: /etc/ssl/ca.pem
        """
    )
    assert report.problems == []
    text = file_at(
        plan, "/run/systemd/system/etcd2.service.d/20-cloudinit.conf"
    ).content.decode()
    assert 'Environment="ETCD_ADVERTISE_CLIENT_URLS=http://10.1.2.3:2379"' in text
    assert 'Environment="ETCD_STRICT_RECONFIG_CHECK=false"' in text
    assert 'Environment="ETCD_TRUSTED_CA_FILE=/etc/ssl/ca.pem"' in text
    assert plan.etcd_client_urls == ["http://10.1.2.3:2379"]


def test_etcd2_problems() -> None:
    _, report = read(
        """\
        coreos:
          etcd2:
            discovery: #DISCOVERY_URL
            listen-peer-urls: 10.0.0.1:2380
            initial-cluster-state: maybe
            heartbeat-interval: 1s
            initial-cluster: a
            wal-size: 9
        """
    )
    assert errors(report) == [
        (4, "coreos.etcd2.discovery is empty: give a value or remove it"),
        (
            5,
            "invalid URL '10.0.0.1:2380' in coreos.etcd2.listen-peer-urls: write "
            "http://host:port or https://host:port",
        ),
        (
            6,
            "invalid coreos.etcd2.initial-cluster-state 'maybe': use one of new, "
            "existing",
        ),
        (7, "invalid coreos.etcd2.heartbeat-interval '1s': use a whole number"),
        (8, "invalid coreos.etcd2.initial-cluster member 'a': write name=URL"),
    ]
    assert warnings(report) == [
        (9, "unknown key coreos.etcd2.wal-size ignored (not an etcd 3.4 flag)")
    ]


# coreos.fleet


def test_fleet_drop_in() -> None:
    plan, report = read(
        """\
        coreos:
          etcd:
            addr: $private_ipv4:4001
          fleet:
            public-ip: $private_ipv4
            metadata:
              - role=web
              - region=test
            agent_ttl: 20s
            disable-engine: yes
        """
    )
    assert report.problems == []
    text = file_at(
        plan, "/run/systemd/system/fleet.service.d/20-cloudinit.conf"
    ).content.decode()
    assert text.splitlines()[2:] == [
        'Environment="FLEET_AGENT_TTL=20s"',
        'Environment="FLEET_DISABLE_ENGINE=true"',
        'Environment="FLEET_ETCD_SERVERS=http://10.1.2.3:4001"',
        'Environment="FLEET_METADATA=role=web,region=test"',
        'Environment="FLEET_PUBLIC_IP=10.1.2.3"',
        "ExecStart=",
        f"ExecStart={FLEETD}",
    ]


def test_fleet_metadata_mapping_and_servers() -> None:
    plan, report = read(
        """\
        coreos:
          fleet:
            metadata: {role: web, disk: ssd}
            etcd_servers: [http://10.0.0.1:2379, http://10.0.0.2:2379]
        """
    )
    assert report.problems == []
    text = file_at(
        plan, "/run/systemd/system/fleet.service.d/20-cloudinit.conf"
    ).content.decode()
    assert 'Environment="FLEET_METADATA=role=web,disk=ssd"' in text
    assert (
        'Environment="FLEET_ETCD_SERVERS=http://10.0.0.1:2379,http://10.0.0.2:2379"'
        in text
    )


def test_fleet_problems() -> None:
    _, report = read(
        """\
        coreos:
          fleet:
            agent_ttl: soon
            metadata: role
            verify_units: true
            colour: blue
        """
    )
    assert errors(report) == [
        (
            4,
            "coreos.fleet.agent_ttl: invalid value for agent_ttl: invalid duration "
            "'soon': use a form like 10s or 1m30s",
        ),
        (
            5,
            "coreos.fleet.metadata: invalid value for metadata: invalid metadata "
            "pair 'role': write key=value, separated by commas",
        ),
    ]
    assert warnings(report) == [
        (6, "coreos.fleet.verify_units is deprecated and ignored"),
        (7, "unknown fleet option coreos.fleet.colour ignored"),
    ]


# coreos.units


def test_units_planned() -> None:
    plan, report = read(
        """\
        coreos:
          units:
            - name: web.service
              runtime: true
              enable: true
              command: restart
              content: |
                [Service]
                ExecStart=/bin/true
                [Install]
                WantedBy=multi-user.target
              drop-ins:
                - name: 10-env.conf
                  content: |
                    [Service]
                    Environment=A=1
            - name: locksmithd.service
              mask: yes
            - name: fleet.service
              command: start
        """
    )
    assert report.problems == []
    paths = [str(write.path) for write in plan.files]
    assert "/run/systemd/system/web.service" in paths
    assert "/run/systemd/system/web.service.d/10-env.conf" in paths
    assert [str(link.path) for link in plan.links] == [
        "/etc/systemd/system/locksmithd.service"
    ]
    assert [(e.unit, e.runtime, e.line) for e in plan.enables] == [
        ("web.service", True, 4)
    ]
    assert [(c.unit, c.command, c.line) for c in plan.commands] == [
        ("web.service", "restart", 4),
        ("fleet.service", "start", 20),
    ]
    assert plan.shipped_units == {"fleet.service"}


def test_units_problems() -> None:
    _, report = read(
        """\
        coreos:
          units:
            - name: web
            - name: a.service
              command: launch
            - name: b@.service
              command: start
            - name: c.service
              mask: true
              content: "[Unit]\\n"
            - name: d.service
              content: |
                [Unit]
                Description=d
                [Service
            - name: e.service
              drop-ins:
                - name: env
                  content: x
            - command: start
        """
    )
    assert [line for line, _ in errors(report)] == [4, 6, 8, 10, 16, 19, 21]
    messages = [message for _, message in errors(report)]
    assert messages[0].startswith(
        "invalid coreos.units[0].name 'web': the name must end in a unit type"
    )
    assert messages[1].startswith(
        "invalid coreos.units[1].command 'launch' for a.service: use one of start"
    )
    assert messages[2] == (
        "coreos.units[2].command: b@.service is a template and cannot be started "
        "or stopped; remove the command"
    )
    assert messages[3].startswith("coreos.units[3] (c.service) has both mask and")
    assert messages[4].startswith(
        "invalid unit file in coreos.units[4] (d.service): section header "
        "'[Service' has no closing ']'"
    )
    assert messages[5] == (
        "invalid coreos.units[5].drop-ins[0].name 'env': a drop-in is a file name "
        "ending in .conf"
    )
    assert messages[6] == "coreos.units[6].name is missing: name the unit"


# the document


def test_document_header_required() -> None:
    plan, report = document.read("hostname: a\n", METADATA, Context())
    assert errors(report) == [
        (
            1,
            "the first line must be '#cloud-config': without it CoreOS did not read "
            "the file as a cloud-config",
        )
    ]
    assert plan.hostname == ("a", 1)


def test_document_unknown_keys_warn() -> None:
    _, report = read("colour: blue\ncoreos:\n  update:\n    reboot-strategy: off\n")
    assert errors(report) == []
    assert warnings(report) == [
        (2, "unknown key colour ignored"),
        (4, "coreos.update is not supported by fleet-cloudinit; ignored"),
    ]


def test_document_duplicate_key() -> None:
    _, report = read("hostname: a\nhostname: b\n")
    assert errors(report) == [
        (2, "hostname is given twice (again on line 3): remove one")
    ]


def test_document_empty_is_valid() -> None:
    plan, report = read("")
    assert report.problems == []
    assert plan.files == []
