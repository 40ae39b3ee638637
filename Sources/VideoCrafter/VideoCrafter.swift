/// The facade library: pipelines and jobs that the two CLIs call.
public enum VideoCrafterVersion {
    public static let string = "0.1.0"
}
