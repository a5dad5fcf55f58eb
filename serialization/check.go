package serialization

// Check reports whether a message of contentType may be decoded under the
// accept list, without decoding anything: it returns a
// *ContentDisallowedError (matching ErrContentDisallowed) exactly when
// Decode would refuse the content type. Consumers call it before handing a
// message to user code.
func (r *Registry) Check(contentType string, accept []string) error {
	return r.check(contentType, accept)
}
