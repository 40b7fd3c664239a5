"""HTTP plumbing: middleware, CORS, authentication, error responses, OpenAPI and SSE."""
