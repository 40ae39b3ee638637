// VCSampling
