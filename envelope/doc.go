// Package envelope is the Kombu wire envelope: the JSON document Kombu's
// virtual transport stores for each message (body, content type and
// encoding, headers, properties with delivery_info and delivery_tag), read
// and written byte for byte as Kombu 5 does (Parse, Envelope.Marshal),
// with the helpers the engine and backends need on raw envelopes
// (MarkRedelivered, Route, ExtractTag) and delivery tags (NewDeliveryTag).
package envelope
