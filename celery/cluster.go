package celery

import (
	"fmt"

	"github.com/redis/go-redis/v9"

	kredis "github.com/kombu-go/kombu/redis"
)

// NewClusterBackend returns a result backend on a Redis Cluster client
// (a *redis.ClusterClient the caller owns; Close does not close it) whose
// keys all carry hashTag, the broker's hash_tag option
// (redis.Options.HashTag): the prefix "{tag}" is applied the way Celery
// applies result_backend_transport_options' global_keyprefix
// (celery.backends.base.BaseKeyValueStoreBackend._add_global_keyprefix,
// Celery 5.3 and later: "_" is added after a prefix not ending in one of
// ":_-."), so results are under "{tag}_celery-task-meta-<id>" and a
// group's keys, the chord counter among them, under
// "{tag}_celery-taskset-meta-<id>...". Every key a chord touches in one
// MULTI then hashes to one slot, the slot of the broker's keys.
//
// The tag is spelled as for the broker ("celery" or "{celery}"); an empty
// tag or one holding other braces is an error matching
// redis.ErrBadOption of the kombu-go redis package.
func NewClusterBackend(client redis.UniversalClient, hashTag string, opts ...BackendOption) (*Backend, error) {
	tag, err := kredis.HashTagPrefix(hashTag)
	if err != nil {
		return nil, fmt.Errorf("celery: cluster result backend: %w", err)
	}
	if tag == "" {
		return nil, fmt.Errorf("celery: cluster result backend: %w: a hash tag is needed (a chord's keys must share a slot)", kredis.ErrBadOption)
	}
	b := NewBackend(client, opts...)
	b.prefix = tag + "_" + b.prefix
	return b, nil
}
