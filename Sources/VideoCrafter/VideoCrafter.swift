// VideoCrafter
