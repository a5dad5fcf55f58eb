// Package redis is kombu-go's Redis backend: a transport.Backend that reads
// and writes Python Kombu's Redis transport layout byte for byte, so Go
// services and Python Kombu/Celery programs share queues, bindings, unacked
// records and fanout channels.
//
// Import it for its side effect to make the "redis", "rediss", "sentinel"
// and "rediscluster" URL schemes available, or build a Backend directly:
//
//	b, err := redis.New(client, redis.WithKeyPrefix("app:"))  // your client, never closed by b
//	b, err := redis.Open(ctx, "redis://localhost:6379/0")     // b owns its client
//
// # Layout (Kombu's, see the wire spec)
//
// With P the global_keyprefix (empty by default) and sep "\x06\x16":
//
//	P+queue, P+queue+sep+step       LIST    messages; LPUSH to publish, RPOP to take
//	P+"_kombu.binding."+exchange    SET     rk+sep+pattern+sep+queue
//	P+"unacked"                     HASH    tag -> [envelope, exchange, routing_key]
//	P+"unacked_index"               ZSET    tag scored by receive time (float seconds)
//	P+"unacked_mutex"               STRING  restore lock: SET token NX PX, Lua release
//	P+"/"+db+"."+exchange[+"/"+rk]  channel fanout PUBLISH / PSUBSCRIBE
//	P+"kombu-go.malformed"          LIST    kombu-go only: messages that cannot be parsed
//	P+"kombu-go.get."+nonce         STRING  kombu-go only: a Get's receipt, deleted by the next Get or after 10 s
//
// Differences from Kombu, all on the safe side:
//
//   - Taking a message and writing its unacked record happen in one Lua
//     script (scripts/get.lua), so a consumer that dies right after the pop
//     loses nothing: the record is there and any restorer, Python's too,
//     brings the message back after visibility_timeout. Kombu pops with
//     BRPOP and writes the record afterwards, on another connection.
//   - Each Get with acks leaves a receipt (a small key living 10 s, deleted
//     by the Backend's next Get once the reply has arrived). When a reply
//     is lost to a connection reset or a server restart, Get retries the
//     same call for up to 8 s and the receipt returns the messages it took,
//     instead of stranding them in unacked until the visibility timeout. Ack and Restore, which can be repeated safely, retry
//     connection errors the same way; Put and Publish never resend (a
//     resent LPUSH could publish twice).
//   - A message that is not a JSON object with properties.delivery_tag is
//     moved by the same script to the malformed list (Kombu crashes and
//     loses it). A missing delivery_info is recorded as exchange "" and the
//     queue's name, which restores to the same queue.
//   - The unacked record holds the envelope bytes as they were popped.
//     Kombu re-serializes the parsed envelope (json.dumps(json.loads(raw))),
//     which gives the same bytes for anything written by Kombu or kombu-go.
//   - EXISTS (QueueExists) and WATCH carry the global key prefix; Kombu
//     never prefixes EXISTS (a passive declare always fails with a prefix)
//     and 5.2.x does not prefix WATCH.
//   - A restore whose record cannot be parsed, or whose message now routes
//     to no queue, moves it to the malformed list; Kombu drops it.
//   - Restore is Kombu's WATCH transaction, but every delivery and ack of
//     every consumer writes the WATCHed hash, so under load it rarely
//     commits: after three failed attempts the same writes are applied by
//     a script that checks that this one record is unchanged
//     (scripts/restore.lua). Kombu retries the WATCH forever.
//   - Restores go to the message's own priority list (Kombu 5.4+); set
//     restore_priority=base for Kombu ≤5.3's base list. All versions read
//     every list, so this changes order only.
//   - Publish routes inside Redis in one script (SMEMBERS and LPUSHes),
//     with a Lua matcher for the regex subset Kombu's key_to_pattern writes;
//     other stored patterns are routed in Go with transport.Lookup. The two
//     routing paths are kept for these reasons only: the script is the
//     fast path (one round trip; make bench's "publish, direct exchange"
//     and "publish, topic exchange" rows measure it, within 10% of each
//     other), and the Go path is the correct one for what the script
//     cannot do (a stored pattern outside the subset, a dead-letter queue
//     for unroutable messages), at the cost of a second round trip.
//   - The fanout prefix's {db} is filled in for Sentinel too (Kombu 5.4+);
//     Kombu ≤5.3 over Sentinel uses the literal "/{db}.", which
//     fanout_prefix=/{{db}}. reproduces.
//
// # Batches (throughput)
//
// Batches cut round trips; each writes exactly what the one-message
// operations write:
//
//   - Fetch takes up to FetchRequest.Max messages in one get.lua call,
//     each recorded as unacked with its take, and deletes the records of
//     acks riding along (FetchRequest.Settle) in the same call. The
//     consumer loop asks for as many as prefetch allows. A Fetch of n
//     from more than twice max(n, 8) queues first looks at the highest
//     priority step of the first max(n, 8) only (what it finds is what the
//     whole list would give), and sends the whole list only when that
//     finds nothing: a consumer of a thousand queues pays per take about
//     what a consumer of one does.
//   - Ack with many tags deletes their records in one MULTI; the channel
//     coalesces acks made while one is in flight.
//   - PublishBatch (transport.BatchPublisher, Producer.PublishBatch) sends
//     many publishes in one pipeline: consecutive messages to one exchange
//     share one scripts/publish_batch.lua call that reads the binding table
//     once; the pipeline's first script call is an EVAL, so a restarted
//     server's empty script cache never reorders a batch.
//
// # Waiting for messages (Fetch with FetchRequest.Wait)
//
// Redis has no command that waits for several lists without popping from
// them, and a pop outside the get script would reopen Kombu's loss window.
// Fetch therefore never pops to wait. It runs the get script; if every
// list is empty it registers with a per-list watcher and runs the script
// again (so nothing pushed in between is missed), then sleeps until a
// watcher signals, the timeout passes, or ctx is done.
//
// A watcher keeps one command blocked on its list:
//
//	BLMOVE list list RIGHT RIGHT 1
//
// Same list, same end: Redis pops the oldest element and pushes it back
// where it was within one command, so the command blocks until the list is
// non-empty and then leaves it unchanged. Whatever happens to the consumer
// or its connection, no message is ever outside Redis's lists or unacked
// records. (Python peers may see a BLMOVE in MONITOR; their BRPOPs are
// served as before.) Needs Redis 6.2 or later.
//
// Guarantees:
//
//  1. A message is only taken by the get script, atomically with its
//     unacked record; the blocking command never takes one.
//  2. A publish wakes a waiting Fetch as soon as Redis serves the blocked
//     BLMOVE: measured under a millisecond on a local redis-server (see
//     TestIntegrationGetWaitLatency).
//  3. With ctx done, a waiting Fetch returns ctx.Err() at once; it never has to
//     cancel a blocking command, so no reply Redis produced is lost (and
//     the watcher's command changes nothing anyway). Close wakes every
//     waiting Fetch with transport.ErrClosed.
//  4. Connections: a Backend keeps at most Options.WaitConnections
//     (wait_connections, default 16) connections blocked, one per watched
//     list, shared by every waiting Fetch of the Backend. A consumer of N queues
//     with S priority steps watches N×S lists (4 per queue by default), and
//     uses one connection of the ordinary pool at a time for the scripts.
//     Lists beyond the limit are polled with a 2–100 ms backoff. When the
//     client is a *redis.Client (Open's, or one given to New), the blocked
//     commands run on a second pool the Backend makes with the client's
//     settings, of at most WaitConnections connections, so they never take
//     connections the rest of the program needs (hooks added to the client
//     with AddHook do not see them); a *redis.ClusterClient gets such a
//     second cluster client too; other clients (Ring, wrappers) carry
//     them in their own pool, which must have room. A
//     watcher ends about a second after its list has no waiter; Close ends
//     them at once by closing that second pool.
//
// # Contexts
//
// Scripts that pop run with context.WithoutCancel, so a cancelled context
// cannot cut off a reply Redis already produced even on clients with
// ContextTimeoutEnabled. Open's clients keep go-redis's default of not
// applying context deadlines to sockets and disable command retries
// (MaxRetries -1) as redis-py does, so a publish whose reply is lost is not
// sent twice.
//
// # Auto-pipelining
//
// Concurrent Publish and Put calls on one Backend share round trips: a
// call made while fewer than two batches are on the wire is sent at once,
// alone; calls made meanwhile wait, and go out together in one pipeline
// (PublishBatch) when a batch's reply arrives. Each call returns its own
// message's result after Redis's reply; a call whose context ends while it
// waits is taken out unsent. auto_pipeline=false in the URL
// (Options.NoAutoPipeline) turns it off.
//
// # Redis Cluster
//
// rediscluster://host:port[,host:port...]?hash_tag=tag opens a go-redis
// ClusterClient on the seed nodes (the rest of the cluster is discovered);
// New accepts a *redis.ClusterClient with WithHashTag. The layout is
// Kombu's rediscluster transport (celery/kombu pull request 2204, not
// merged): every key and channel is
//
//	"{" + hash_tag + "}" + global_keyprefix + Kombu's name
//
// (the PR's formula hash_tag + global_keyprefix + name, where its option is
// written with the braces, "{tag}"; kombu-go accepts both spellings), so
// all of the transport's keys hash to the tag's slot and every script,
// MULTI and blocking wait runs on one master, with every guarantee of the
// single-instance transport (the conformance suite runs on a local 3+3
// cluster: TestClusterConformance).
//
// When to choose it: for failover without Sentinel, or because the Redis
// you are given is a cluster (managed cluster-mode services). Not for
// throughput: the tag's slot lives on one master, so one master carries
// all of the transport's queues and the others carry none of its load.
// Teams that need queues spread over masters use the sharded layout
// below (Go only). Separate transports with different tags (one per
// application) may also land on different masters.
//
// Failover: kill the tag's master and a replica is promoted in about
// cluster-node-timeout plus a second; producers and consumers follow by
// themselves (go-redis reloads the slot map on MOVED and on connection
// errors; so does the backend after a write that waited for replicas,
// which goes in a pipeline on the master's own connection). Replication
// is asynchronous, so use publish_wait_replicas=1 (see Replication; on a
// cluster the WAIT runs on the tag's master): then a publish that
// returned nil survives the failover (TestClusterFailover: about 15,000
// to 25,000 publishes a run, the master SIGKILLed, none confirmed lost). Takes and acks written just before the crash may be
// undone by it: a message can then be delivered twice (at-least-once),
// never lost; the visibility sweep brings back records whose reply was
// lost. go-redis's cluster client resends a command whose connection
// broke (MaxRedirects), so a publish around a failover may land twice.
//
// Resharding: moving the tag's slot to another master (`redis-cli
// --cluster reshard`, or CLUSTER SETSLOT and MIGRATE by hand) while the
// transport runs loses nothing. While the slot migrates, takes get
// TRYAGAIN (or a redirect go-redis gave up on) and retry with their
// receipt; Publish, PublishBatch, Put and PutBatch wait it out (up to
// 8 s) and then run on the target; acks retry; single-key commands follow ASK. The publish
// scripts declare a slot guard key that no one writes, so they never run
// on the target while the source still holds their queues (cluster.go
// says why). TestClusterReshard keeps a migration in progress
// for 2.5 s under traffic, in the worst key order: no confirmed publish
// lost, no duplicate, no error returned; TestClusterWorkerReshard (package
// celery) runs `redis-cli --cluster reshard` of a busy Celery queue's
// slot under the Go worker. PublishBatch sends again the messages a
// migration kept from being written when they end the batch (so its order
// holds); a message not written before one that was returns its TRYAGAIN.
//
// Fanout is PUBLISH and PSUBSCRIBE, as in the PR, both on the master of
// the channel's slot (the channel carries the tag), where Redis keeps one
// connection's order; sharded pub/sub would pin the same node but has no
// pattern subscribe and Python would not hear it.
//
// Bad input fails at Open before any message moves: a URL mixing
// rediscluster:// with redis:// (ErrBadURL), a host list or hash_tag on
// redis://, a tag with braces other than the PR's outer pair, a database
// other than 0, and a seed that is a single-instance server
// (ErrNotCluster).
//
// Python beside it: only a Kombu with pull request 2204 applied has
// rediscluster:// (Debian's Kombu 5.2.4 and 5.5.3 do not), with
// transport_options {"hash_tag": "{tag}", "global_keyprefix": ...} matching
// the Go URL's hash_tag=tag. kombu-go's interop proof for this layout is
// Go to Go plus the key formula checked against the PR's (TestClusterHashTag,
// TestClusterOpenURL). The Celery result backend on a cluster is
// celery.NewClusterBackend with the same tag.
//
// The sharded layout, rediscluster://...?cluster_layout=sharded (New: the
// option WithClusterLayout(LayoutSharded)), is kombu-go's own: each
// queue's keys are P+"{"+queue+"}"+name (its priority lists, the unacked
// records of what was taken from it, its restore mutex and dead-letter
// list), so the queues spread over the masters. Takes run the take script
// per queue (no command spans two slots), leaving out queues their
// watchers say are empty; acks find the queue of a tag in an in-process
// map; publishes route in Go through a briefly cached binding table; the
// visibility sweep walks the queues with unacked records, each under its
// own mutex; fanout is sharded pub/sub (SPUBLISH, SSUBSCRIBE). Priorities
// are strict within a queue, not across queues (round robin); a message
// routed to several queues is not all-or-nothing. No Python Kombu reads
// it. hash_tag and a global_keyprefix with braces are refused with it, and
// so is a queue name holding a brace
// (ErrShardedName). CLUSTER-SHARDED.md in the package's source has the
// keys, the guarantees and the measured cost (TestShardedConformance,
// TestShardedLoadSpread).
//
// # Replication
//
// Redis replicates asynchronously: a publish the master acknowledged just
// before it is lost (a crash, or a failover that demotes it) can be lost
// with it. With publish_wait_replicas=N (Options.PublishWaitReplicas, and
// publish_wait_timeout, 1 s by default) every write of a new message
// (Publish, PublishBatch, and Put and PutBatch, which a publish to the
// default exchange is) sends Redis's WAIT after the write on the same
// connection and returns nil only once N replicas have the message;
// otherwise the message is published, on the master only, and the call
// returns a *NotReplicatedError (errors.Is transport.ErrNotReplicated),
// which retry policies do not retry. Moves inside the library (a bad
// message to the dead-letter queue, a no-ack message given back at
// shutdown) treat such a write as done. kombu-go's own option; Kombu has
// none.
//
// Redis's cjson rejects some JSON
// that Python accepts (lone UTF-16 surrogate escapes, nesting deeper than
// 1000); such messages go to the malformed list instead of being delivered.
package redis
