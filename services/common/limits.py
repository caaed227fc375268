"""Every limit pushgrid enforces, in one place (JPush's defaults where JPush has one)."""

TAG_MAX_BYTES = 40  # a tag, UTF-8
ALIAS_MAX_BYTES = 40  # an alias, UTF-8
DEVICE_MAX_TAGS = 1000  # tags on one device
ALIAS_MAX_DEVICES = 10  # devices sharing one alias
AUDIENCE_MAX_TAGS = 20  # tags in each of tag, tag_and, tag_not of one push
AUDIENCE_MAX_ALIASES = 1000  # aliases in one push
AUDIENCE_MAX_REGIDS = 1000  # registration ids in one push
TAGS_PER_CALL = 100  # tags added or removed in one call

REGID_MAX_BYTES = 64
APP_NAME_MAX_BYTES = 100

PAGE_DEFAULT = 1000  # members per page when the caller passes 0
PAGE_MAX = 10000  # members per page at most

PAYLOAD_MAX_BYTES = 4000  # notification plus message, as JSON
TTL_DEFAULT_SECONDS = 86400  # one day
TTL_MAX_SECONDS = 10 * 86400  # ten days
BIG_PUSH_MAX_MINUTES = 1440
SCHEDULE_MAX_AHEAD_SECONDS = 365 * 86400

PUSH_QUOTA_DEFAULT = 600  # push calls per minute per app (push and schedule count)
PUSH_QUOTA_MAX = 1_000_000
PUSH_BATCH_MAX = 1000  # pushes in one pushBatch call (JPush's batch push takes as many)

MSG_IDS_PER_REPORT = 100
MESSAGE_ERROR_MAX_CHARS = 255  # an error noted on a message's report (message_stats.error)
REPLY_MAX_BYTES = 512 * 1024  # a list reply stops growing here (Ice.MessageSizeMax is 4 MiB)
RECEIPTS_PER_CALL = 10000

OFFLINE_PER_DEVICE = 10  # targeted messages kept per offline device (newest win)
BROADCAST_LOG_MAX = 200  # broadcasts kept per app for replay (within their TTL)
DELIVER_BATCH = 1000  # registration ids per STC.deliver call
DEVICE_BATCH = 1000  # hellos verified or devices registered in one DBAgent or TagAlias call
DELIVER_TIMEOUT_SECONDS = 10  # STC gives up a deliver call after this; the dispatcher waits as long
BROADCAST_GRACE_SECONDS = 60  # a broadcast call may take its spread plus this
PRESENCE_TTL_SECONDS = 90  # presence expires unless STC refreshes it (STC does every 30 s)
HEARTBEAT_SECONDS = 180  # device heartbeat STC asks for: minutes, as JPush, under NAT timeouts
DEVICE_FRAME_MAX_BYTES = 8192  # largest frame a device may send
DEVICE_AUTH_TIMEOUT_SECONDS = 10
ACKS_PER_FRAME = 100
DEVICE_FRAMES_PER_SECOND = 50  # frames one device may send per second (burst as large)
DEVICE_OUTBOX_MAX_BYTES = 256 * 1024  # unwritten bytes to one device before it counts as too slow
DEVICE_SENT_RECORD = 1000  # msg ids STC remembers per connection to route the device's acks
RECEIPTS_PER_RECORD = 500  # acks in one receipts record on Kafka

# Push and the dispatchers
KAFKA_ACK_TIMEOUT_SECONDS = 10  # push waits this long for the broker to take a task
DISPATCH_PAGE = 1000  # registration ids per audience page a dispatcher resolves
TASK_BATCH = 200  # tasks a dispatcher polls and runs together (one call per step for all of them)
MESSAGES_PER_CALL = 1000  # messages named in one of DBAgent's calls about many (getMessages, ...)
DUE_PER_SCAN = 100  # scheduled messages the scheduler publishes per one-second scan
ONLINE_ONLY_GRACE_SECONDS = 60  # STC may still send a time_to_live 0 message this long after dispatch

# Partners through Glacier2 (glacier2/)
LEADER_LEASE_SECONDS = 5  # a dispatcher leading the scheduler or the reconciler renews its lease within this
TASK_START_DEADLINE_SECONDS = 60  # an Accepted message whose task has not started this long is published again
RECONCILE_SECONDS = 10  # the reconciler looks for such messages this often
REPORT_RETENTION_DAYS = 7  # reports (messages, receipts, stats) are kept this long after a message expires
RETENTION_SECONDS = 600  # the purge of what is older runs this often
PURGE_PER_CALL = 500  # messages one DBAgent.purgeExpired call deletes
REGISTRATIONS_PER_ADDRESS = (5.0, 200)  # device registrations a second from one address, and at most at once
REGISTRATIONS_PER_APP = (1000.0, 20_000)  # ... for one app
LOGIN_FAILURE_WINDOW_SECONDS = 600  # failed logins are counted in windows this long
LOGIN_FAILURES_PER_APP = 10  # failed logins of one app key (from anywhere) per window before its logins slow down
LOGIN_SLOWDOWN_SECONDS = 1.0  # ... each waiting this long before its secret is checked (never refused)
LOGIN_FAILURES_PER_ADDRESS = 50  # failed logins from one address per window (any app key), then refused
LOGIN_CHECKS_AT_ONCE = 1  # verifyApp's scrypts running at once in one DBAgent process (a core each)
LOGIN_CHECKS_WAITING = 64  # ... and waiting; beyond that a login is told to try again
LOGIN_CHECKS_NICE = 10  # the nice value of the threads checking logins: other calls go first
LOGIN_FAILURES_PER_ADDRESS_AND_APP = 10  # failed logins of one app key from one address per window, then refused
PARTNER_SESSIONS_PER_APP = 100  # live partner sessions of one app
PARTNER_SESSION_TIMEOUT_SECONDS = 30  # the router closes a partner connection quiet this long
PARTNER_SESSION_SWEEP_SECONDS = 30  # the gateway checks its sessions' routers this often
PARTNER_SESSION_PING_MS = 5000  # how long the sweep waits for a router to answer for one session
PARTNER_REQUEST_MAX_KIB = 1024  # the largest request the router takes from a partner
