package registry

// Fields kept for targeting by tag (Go additions; Perl readers ignore them).
const (
	FieldTags        = "tags"         // the agent's [tags]: an object of strings
	FieldTagsUpdated = "tags_updated" // ISO time the control host last learnt them
)
